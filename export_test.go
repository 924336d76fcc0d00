package dualstack

import (
	"context"
	"net/netip"
)

// ListenResolving is lc.Listen with lookup in place of the DNS resolver.
func ListenResolving(ctx context.Context, lc *ListenConfig, lookup func(ctx context.Context, network, host string) ([]netip.Addr, error), network, address string) (*Listener, error) {
	sys := hostSystem
	sys.lookup = lookup
	return lc.listen(ctx, sys, network, address)
}

// ListenPacketResolving is lc.ListenPacket with lookup in place of the DNS
// resolver, and the portable reader if asked.
func ListenPacketResolving(ctx context.Context, lc *ListenConfig, lookup func(ctx context.Context, network, host string) ([]netip.Addr, error), portable bool, network, address string) (*PacketConn, error) {
	sys := hostSystem
	sys.lookup = lookup
	if portable {
		sys.mergePackets = newChanReader
	}
	return lc.listenPacket(ctx, sys, network, address)
}

// ListenPortableAccept is lc.Listen with the portable acceptor, used where
// the OS offers no better, in place of the host's.
func ListenPortableAccept(lc *ListenConfig, ctx context.Context, network, address string) (*Listener, error) {
	sys := hostSystem
	sys.merge = newChanAcceptor
	return lc.listen(ctx, sys, network, address)
}

// ListenPacketPortable is lc.ListenPacket with the portable reader, used
// where the OS offers no better, in place of the host's.
func ListenPacketPortable(lc *ListenConfig, ctx context.Context, network, address string) (*PacketConn, error) {
	sys := hostSystem
	sys.mergePackets = newChanReader
	return lc.listenPacket(ctx, sys, network, address)
}

// ListenUnguarded is lc.Listen without guard sockets, as the package was
// before it held them: the control of the later-binder scenarios.
func ListenUnguarded(lc *ListenConfig, ctx context.Context, network, address string) (*Listener, error) {
	sys := hostSystem
	sys.facts.guards = false
	return lc.listen(ctx, sys, network, address)
}

// ListenPacketUnguarded is lc.ListenPacket without guard sockets.
func ListenPacketUnguarded(lc *ListenConfig, ctx context.Context, network, address string) (*PacketConn, error) {
	sys := hostSystem
	sys.facts.guards = false
	return lc.listenPacket(ctx, sys, network, address)
}
