package dualstack

import (
	"context"
	"net"
)

// PollCalls is the number of epoll_wait(2) calls so far.
func PollCalls() uint64 { return pollCalls.Load() }

// ListenPacketLevelTriggered is lc.ListenPacket with its sockets held
// level-triggered by the reader's epoll descriptor, as they were before
// the reader drained them.
func ListenPacketLevelTriggered(lc *ListenConfig, ctx context.Context, network, address string) (*PacketConn, error) {
	sys := hostSystem
	sys.mergePackets = func(conns []*net.UDPConn) (packetReader, error) { return newPollReaderDraining(conns, false) }
	return lc.listenPacket(ctx, sys, network, address)
}
