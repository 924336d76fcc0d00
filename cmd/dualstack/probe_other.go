//go:build !unix && !windows

package main

import (
	"errors"
	"runtime"
)

func kernelRelease() string { return "" }

func ipv6Sockets() bool { return false }

func v6onlyDefault() (bool, error) {
	return false, errors.New("not read on " + runtime.GOOS)
}
