//go:build !unix && !windows

package dualstack

import (
	"errors"
	"runtime"
)

// sysSockets is the host's socket layer; there is none on this system.
type sysSockets struct{}

var hostSockets socketAPI = sysSockets{}

// defaultBacklog is the listen backlog where the OS tells no other.
const defaultBacklog = 128

var errNoSockets = errors.New("dualstack: sockets are not supported on " + runtime.GOOS)

func (sysSockets) socket(sockOpts) (socket, error) { return nil, errNoSockets }

func addrInUse(error) bool     { return false }
func unservable(error) bool    { return false }
func accessDenied(error) bool  { return false }
func notAssignable(error) bool { return false }
