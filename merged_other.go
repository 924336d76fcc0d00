//go:build !linux

package dualstack

// newAcceptor makes the acceptor of a listener on several sockets.
var newAcceptor = newChanAcceptor
