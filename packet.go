package dualstack

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// ListenPacket announces on the local network address for UDP, on both
// address families where the address calls for it, as [ListenConfig.Listen]
// does for TCP: the network is "udp", "udp4" or "udp6", the address forms,
// modes, atomic choice of one port and guards are the same. The sockets
// asked for never get SO_REUSEADDR or SO_REUSEPORT: on a unicast UDP port
// either lets another socket share the port on Linux. Guards (macOS,
// FreeBSD) get SO_REUSEADDR, which there lets no one share their address.
//
// The context affects only the resolution of host and port names.
func (lc *ListenConfig) ListenPacket(ctx context.Context, network, address string) (*PacketConn, error) {
	return lc.listenPacket(ctx, hostSystem, network, address)
}

// ListenPacket announces on the local network address for UDP with the
// zero [ListenConfig]; see [ListenConfig.ListenPacket].
func ListenPacket(network, address string) (*PacketConn, error) {
	var lc ListenConfig
	return lc.ListenPacket(context.Background(), network, address)
}

func (lc *ListenConfig) listenPacket(ctx context.Context, sys system, network string, addresses ...string) (*PacketConn, error) {
	p, err := lc.plan(ctx, sys, udp, network, addresses...)
	if err != nil {
		return nil, &net.OpError{Op: "listen", Net: network, Err: err}
	}
	r, err := lc.binder(sys).bind(p)
	if err != nil {
		return nil, listenError(udp, network, err)
	}
	h, err := handOver(r, toUDPConn)
	if err != nil {
		return nil, listenError(udp, network, err)
	}
	return newPacketConn(sys, h, p.mode(), network)
}

// newPacketConn makes a PacketConn of h. On error it closes everything.
func newPacketConn(sys system, h handedOver[*net.UDPConn], mode Mode, network string) (*PacketConn, error) {
	pc := &PacketConn{conns: h.conns, held: h.held, mode: mode, network: network}
	for i, c := range h.conns {
		if i < h.asked {
			pc.addrs = append(pc.addrs, c.LocalAddr())
		}
		pc.fams = append(pc.fams, h.eps[i].family())
	}
	pc.addr = mainAddr(pc.addrs, h.eps[:h.asked])
	for i := range h.asked {
		if slices.Index(pc.fams, pc.fams[i]) < i {
			pc.routes = &peerRoutes{m: map[netip.AddrPort]int{}}
		}
	}
	if len(h.conns) > 1 {
		var err error
		if pc.r, err = sys.mergePackets(h.conns); err != nil {
			closeAll(h.conns)
			closeHeld(h.held)
			return nil, &net.OpError{Op: "listen", Net: network, Addr: pc.addr, Err: err}
		}
	}
	return pc, nil
}

func toUDPConn(s socket) (*net.UDPConn, error) {
	us, ok := s.(udpSocket)
	if !ok {
		s.close()
		return nil, errors.New("dualstack: socket cannot become a UDP connection")
	}
	return us.udpConn()
}

// PacketConn is a UDP endpoint on one port, on one or several sockets. It
// implements [net.PacketConn]. On macOS and FreeBSD it holds guard sockets
// as [Listener] does; datagrams to a loopback guard are read like the
// others.
//
// Reads take packets from whichever socket has one, no socket starving
// another. A write leaves through a socket of the destination's family (an
// IPv4-mapped destination is IPv4), so a reply to a packet's source leaves
// from the family it came in on. With several addresses of one family (a
// host name), reads remember which socket each of the last 4,096 or so
// peers wrote to, and a write to such a peer leaves from that socket, the
// address the peer expects its reply from; a write to another destination
// leaves from the first socket of its family. In Single mode source
// addresses are reported unmapped, and plain IPv4 destinations work.
type PacketConn struct {
	conns   []*net.UDPConn // the sockets asked for, then the guards read from
	fams    []family       // of conns
	addrs   []net.Addr     // of the sockets asked for
	addr    net.Addr
	held    []socket // the bound guards
	mode    Mode
	network string
	r       packetReader // nil with one socket
	routes  *peerRoutes  // set where several sockets asked for share a family
	closed  atomic.Bool
}

var _ net.PacketConn = (*PacketConn)(nil)

// packetReader reads from several sockets as one, and owns their read
// deadlines and their closing. Its errors are bare causes: net.ErrClosed,
// os.ErrDeadlineExceeded, system call errors.
type packetReader interface {
	// read also returns the index of the socket the packet came in on.
	read(b []byte) (n int, src netip.AddrPort, k int, err error)
	// readMsg is read with the packet's ancillary data into oob.
	readMsg(b, oob []byte) (n, oobn, flags int, src netip.AddrPort, k int, err error)
	setReadDeadline(t time.Time) error
	close() error
}

// ReadFromUDPAddrPort reads a packet into b and returns its size and
// source address, unmapped. It does not allocate.
func (p *PacketConn) ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error) {
	if !p.ok() {
		return 0, netip.AddrPort{}, errZero("read", "udp")
	}
	if p.r == nil {
		n, ap, err := p.conns[0].ReadFromUDPAddrPort(b)
		return n, UnmapAddrPort(ap), err
	}
	n, ap, k, err := p.r.read(b)
	if p.routes != nil && err == nil {
		p.routes.remember(ap, k)
	}
	if err != nil {
		return n, ap, p.opError("read", nil, err)
	}
	return n, ap, nil
}

// ReadFrom implements [net.PacketConn]: the source is a *[net.UDPAddr],
// unmapped.
func (p *PacketConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, ap, err := p.ReadFromUDPAddrPort(b)
	if err != nil {
		return n, nil, err
	}
	return n, net.UDPAddrFromAddrPort(ap), nil
}

// WriteToUDPAddrPort writes a packet to ap, through the socket of ap's
// family (an IPv4-mapped ap is IPv4).
func (p *PacketConn) WriteToUDPAddrPort(b []byte, ap netip.AddrPort) (int, error) {
	if !p.ok() {
		return 0, errZero("write", "udp")
	}
	c, ap := p.connFor(ap)
	if c == nil {
		return 0, p.opError("write", net.UDPAddrFromAddrPort(ap), errNoSocketForFamily)
	}
	return c.WriteToUDPAddrPort(b, ap)
}

var errNoSocketForFamily = errors.New("dualstack: no socket of the destination's address family")

// WriteTo implements [net.PacketConn]; addr must be a *[net.UDPAddr].
func (p *PacketConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	if !p.ok() {
		return 0, errZero("write", "udp")
	}
	a, ok := addr.(*net.UDPAddr)
	if !ok || a == nil {
		return 0, p.opError("write", addr, syscall.EINVAL)
	}
	return p.WriteToUDPAddrPort(b, a.AddrPort())
}

// connFor returns the socket that writes to ap, and ap as it should be
// given to it.
func (p *PacketConn) connFor(ap netip.AddrPort) (*net.UDPConn, netip.AddrPort) {
	if p.mode == Single {
		return p.conns[0], ap // the kernel maps an IPv4 destination
	}
	ap = UnmapAddrPort(ap)
	want := inet6
	if ap.Addr().Is4() {
		want = inet4
	}
	if p.routes != nil {
		if k, ok := p.routes.via(ap); ok && p.fams[k] == want {
			return p.conns[k], ap
		}
	}
	for i, f := range p.fams {
		if f == want {
			return p.conns[i], ap
		}
	}
	return nil, ap
}

// peerRoutes remembers, for a PacketConn with several sockets of one
// family, which socket each peer's last datagram came in on, so that a
// reply leaves from the address the peer wrote to. It holds the last
// maxPeerRoutes peers or so: when full it starts again empty, and a peer
// forgotten gets its replies from the first socket of its family until
// it writes again.
type peerRoutes struct {
	mu sync.Mutex
	m  map[netip.AddrPort]int
}

const maxPeerRoutes = 4096

func (r *peerRoutes) remember(peer netip.AddrPort, k int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if old, ok := r.m[peer]; ok && old == k {
		return
	}
	if len(r.m) >= maxPeerRoutes {
		clear(r.m)
	}
	r.m[peer] = k
}

func (r *peerRoutes) via(peer netip.AddrPort) (int, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k, ok := r.m[peer]
	return k, ok
}

// Close closes every socket. Blocked and later reads and writes return an
// error for which errors.Is(err, net.ErrClosed) holds; no goroutine of the
// PacketConn outlives Close. Closing twice returns such an error too.
func (p *PacketConn) Close() error {
	if !p.ok() {
		return errZero("close", "udp")
	}
	if p.closed.Swap(true) {
		return p.opError("close", nil, net.ErrClosed)
	}
	closeHeld(p.held)
	if p.r != nil {
		return p.r.close()
	}
	return p.conns[0].Close()
}

// LocalAddr returns the PacketConn's address as [Listener.Addr] does: [::]:P
// for a wildcard served on both families, otherwise the first of Addrs;
// nil for a PacketConn that ListenPacket did not return.
func (p *PacketConn) LocalAddr() net.Addr {
	if !p.ok() {
		return nil
	}
	return p.addr
}

// ok reports whether p is one that ListenPacket returned: the zero
// PacketConn has no socket, and its methods fail with EINVAL.
func (p *PacketConn) ok() bool { return p != nil && len(p.conns) > 0 }

// Addrs returns every address the PacketConn is bound to, IPv4 first, all
// on one port. It returns a new slice on each call.
func (p *PacketConn) Addrs() []net.Addr {
	if !p.ok() {
		return nil
	}
	return append([]net.Addr(nil), p.addrs...)
}

// Mode returns the mode in force, as [Listener.Mode] does.
func (p *PacketConn) Mode() Mode {
	if !p.ok() {
		return Auto
	}
	return p.mode
}

// SetDeadline sets the read and write deadlines of every socket.
func (p *PacketConn) SetDeadline(t time.Time) error {
	if err := p.SetReadDeadline(t); err != nil {
		return err
	}
	return p.SetWriteDeadline(t)
}

// SetReadDeadline sets the deadline of reads, blocked ones included.
func (p *PacketConn) SetReadDeadline(t time.Time) error {
	if !p.ok() {
		return errZero("set", "udp")
	}
	if p.r == nil {
		return p.conns[0].SetReadDeadline(t)
	}
	if p.closed.Load() {
		return p.opError("set", nil, net.ErrClosed)
	}
	if err := p.r.setReadDeadline(t); err != nil {
		return p.opError("set", nil, err)
	}
	return nil
}

// SetWriteDeadline sets the deadline of writes on every socket.
func (p *PacketConn) SetWriteDeadline(t time.Time) error {
	if !p.ok() {
		return errZero("set", "udp")
	}
	for _, c := range p.conns {
		if err := c.SetWriteDeadline(t); err != nil {
			return err
		}
	}
	return nil
}

func (p *PacketConn) opError(op string, addr net.Addr, err error) error {
	return &net.OpError{Op: op, Net: p.network, Source: p.addr, Addr: addr, Err: err}
}

// chanReader reads from several sockets with a goroutine a socket, each
// reading into a buffer of its own, through a fanIn; read copies out of
// the buffers. It is portable; see fanIn for its order under load.
type chanReader struct {
	conns []*net.UDPConn
	in    *fanIn[packet]
	run   func(i int)
}

type packet struct {
	buf *[maxDatagram]byte // from bufPool
	n   int
	src netip.AddrPort
	err error
	k   int // the socket
}

// maxDatagram is the largest UDP payload.
const maxDatagram = 65535

var bufPool = sync.Pool{New: func() any { return new([maxDatagram]byte) }}

func newChanReader(conns []*net.UDPConn) (packetReader, error) {
	r := &chanReader{conns: conns, in: newFanIn[packet](len(conns))}
	r.run = r.readLoop
	return r, nil
}

// readMsg reads as read does: the portable reader gives no ancillary
// data (oobn is 0).
func (r *chanReader) readMsg(b, _ []byte) (int, int, int, netip.AddrPort, int, error) {
	n, src, k, err := r.read(b)
	return n, 0, 0, src, k, err
}

func (r *chanReader) read(b []byte) (int, netip.AddrPort, int, error) {
	pk, err := r.in.get(r.run)
	if err != nil {
		return 0, netip.AddrPort{}, -1, err
	}
	n := copy(b, pk.buf[:pk.n])
	bufPool.Put(pk.buf)
	return n, UnmapAddrPort(pk.src), pk.k, pk.err
}

// readLoop reads from socket i.
func (r *chanReader) readLoop(i int) {
	for {
		buf := bufPool.Get().(*[maxDatagram]byte)
		n, src, err := r.conns[i].ReadFromUDPAddrPort(buf[:])
		if errors.Is(err, net.ErrClosed) {
			bufPool.Put(buf)
			return
		}
		if err != nil {
			var oe *net.OpError
			if errors.As(err, &oe) {
				err = oe.Err // PacketConn wraps the cause
			}
		}
		if !r.in.put(i, packet{buf, n, src, err, i}) {
			bufPool.Put(buf)
			return
		}
	}
}

func (r *chanReader) setReadDeadline(t time.Time) error {
	r.in.dl.set(t)
	return nil
}

func (r *chanReader) close() error {
	r.in.close()
	first := closeAll(r.conns)
	r.in.wait(func(pk packet) { bufPool.Put(pk.buf) })
	return first
}
