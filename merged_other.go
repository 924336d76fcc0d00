//go:build !linux && !darwin && !dragonfly && !freebsd && !netbsd && !openbsd

package dualstack

// newAcceptor makes the acceptor of a listener on several sockets: where
// there is neither epoll nor kqueue, a goroutine a socket.
var newAcceptor = newChanAcceptor

// newPacketReader makes the reader of a PacketConn on several sockets.
var newPacketReader = newChanReader
