//go:build !linux && !darwin

package dualstack

import (
	"runtime"
	"syscall"
)

// hostFacts are the facts of the OS this package runs on.
var hostFacts = factsFor(runtime.GOOS)

// listenBacklog returns the backlog passed to listen(2).
func listenBacklog() int { return syscall.SOMAXCONN }
