//go:build !linux && !darwin && !freebsd && !netbsd && !openbsd && !dragonfly

package main

import "runtime"

// v6onlySource names where the IPV6_V6ONLY default comes from.
func v6onlySource() string {
	if runtime.GOOS == "windows" {
		return "Windows: on for every new socket"
	}
	return "the " + runtime.GOOS + " default; its setting is not read"
}

// ipv6Sysctl is not read here.
func ipv6Sysctl() string { return "" }

// portRange is not read here.
func portRange() (first, last int, source string, ok bool) { return 0, 0, "", false }
