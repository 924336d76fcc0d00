package dualstack

import "context"

// MultiListen listens on several addresses at once, on one port, as one
// Listener: each address means what it means to [ListenConfig.Listen]
// (a wildcard, localhost, a literal, a host name), and the listener holds
// the sockets of all of them, or fails and holds none. The addresses must
// share their port, or all have port 0, for one port chosen for all. An
// address given twice, or reached twice (a name and its address), is bound
// once; a wildcard and another address of its family are refused, since
// the wildcard already takes that address's traffic. It is what
// k8s.io/utils/net.MultiListen does, atomic and on one port.
func (lc *ListenConfig) MultiListen(ctx context.Context, network string, addresses ...string) (*Listener, error) {
	return lc.listen(ctx, hostSystem, network, addresses...)
}

// MultiListen listens on several addresses with the zero [ListenConfig];
// see [ListenConfig.MultiListen].
func MultiListen(network string, addresses ...string) (*Listener, error) {
	var lc ListenConfig
	return lc.MultiListen(context.Background(), network, addresses...)
}

// MultiListenPacket is [ListenConfig.MultiListen] for UDP.
func (lc *ListenConfig) MultiListenPacket(ctx context.Context, network string, addresses ...string) (*PacketConn, error) {
	return lc.listenPacket(ctx, hostSystem, network, addresses...)
}

// MultiListenPacket is [ListenConfig.MultiListenPacket] with the zero
// [ListenConfig].
func MultiListenPacket(network string, addresses ...string) (*PacketConn, error) {
	var lc ListenConfig
	return lc.MultiListenPacket(context.Background(), network, addresses...)
}
