//go:build !linux

package dualstack

// newAcceptor makes the acceptor of a listener on several sockets.
var newAcceptor = newChanAcceptor

// newPacketReader makes the reader of a PacketConn on several sockets.
var newPacketReader = newChanReader
