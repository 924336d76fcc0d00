package dualstack

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Mode selects how a wildcard address is served: on two sockets, one a
// family, or on one IPv6 socket that also takes IPv4.
type Mode int

const (
	// Auto is the zero Mode. It is Separate where the host can create
	// AF_INET6 sockets, and IPv4 alone where it cannot; for localhost it
	// binds ::1 only where ::1 can be assigned. It never picks Single.
	Auto Mode = iota

	// Separate binds an IPv4 socket and an IPv6 socket with
	// IPV6_V6ONLY=1, on the same port. Each family arrives on its own
	// socket, so peers never show as IPv4-mapped addresses, and no
	// socket of another process can take the IPv4 traffic of the port.
	// Accept waits on both sockets and returns the kernel's own
	// *net.TCPConn.
	//
	// Choose Separate (or Auto) unless one socket matters more: it works
	// on every OS, and its connections need no wrapping.
	Separate

	// Single binds one IPv6 socket with IPV6_V6ONLY=0, set explicitly
	// whatever the OS default, so that it takes IPv4 clients too. The
	// kernel hands those over IPv4-mapped (::ffff:a.b.c.d); Accept returns
	// each connection as a [Conn] that reports them in IPv4 form, at the
	// cost of an allocation each time an IPv4 peer's address is asked for.
	// Code that type-asserts *net.TCPConn must use [Conn.NetConn] or the
	// Conn's TCPConn field instead.
	//
	// Single is one socket, like net.Listen's, but it is not available on
	// every OS (OpenBSD and DragonFly cannot clear IPV6_V6ONLY; see the
	// BUG notes), and it serves only wildcard addresses: a specific
	// address always gets a socket of its own family.
	Single
)

// String returns the name of the mode: "Auto", "Separate" or "Single".
func (m Mode) String() string {
	switch m {
	case Auto:
		return "Auto"
	case Separate:
		return "Separate"
	case Single:
		return "Single"
	}
	return "Mode(" + strconv.Itoa(int(m)) + ")"
}

// DefaultAttempts is the number of ephemeral port attempts that a zero
// [ListenConfig.Attempts] stands for.
const DefaultAttempts = 32

// ListenConfig holds the options for listening on both address families.
// Its zero value listens in Auto mode with the defaults of
// [net.ListenConfig].
type ListenConfig struct {
	// Mode selects how a wildcard address is served. The zero value is
	// Auto.
	Mode Mode

	// Attempts is the number of times Listen tries to bind an ephemeral
	// port (port 0) before it gives up: an attempt fails when another
	// socket holds one half of the port it picked. Zero means
	// DefaultAttempts; negative values are an error. Explicit ports are
	// tried once.
	Attempts int

	// Control, if not nil, is called after a socket is created and our
	// options (IPV6_V6ONLY, SO_REUSEADDR) are set, before it is bound, as
	// in [net.ListenConfig]. It is called for every socket that the
	// listener will hold, guards included, with network "tcp4" or "tcp6"
	// ("udp4" or "udp6" for ListenPacket) and the address being bound,
	// such as "0.0.0.0:0" or "[::1]:40312": port 0 for the socket that
	// picks the port, the port it picked for the others (not the address
	// passed to Listen, which net.ListenConfig would give); not for the
	// probes that pick a port and are closed.
	//
	// With port 0, Control must not turn on an option that lets other
	// sockets share the port (SO_REUSEPORT, SO_REUSEPORT_LB, or
	// SO_REUSEADDR where Listen left it off): the port would no longer be
	// the listener's alone, and on the BSDs the port search itself would
	// skip fewer ports. Listen reads the options back and fails if one is
	// on. To share a port on purpose, listen on an explicit one.
	Control func(network, address string, c syscall.RawConn) error

	// KeepAlive is the keep-alive period of accepted connections, as in
	// [net.ListenConfig]: zero enables keep-alive with the defaults,
	// negative disables it. It is ignored if KeepAliveConfig.Enable is
	// true.
	KeepAlive time.Duration

	// KeepAliveConfig is the keep-alive configuration of accepted
	// connections, as in [net.ListenConfig].
	KeepAliveConfig net.KeepAliveConfig

	mptcp int8 // SetMultipathTCP: 0 net's default, 1 on, -1 off
}

// MultipathTCP reports whether Listen makes Multipath TCP sockets: as
// [net.ListenConfig.MultipathTCP], what SetMultipathTCP set, or else net's
// default (on in Go 1.24 and later, unless GODEBUG=multipathtcp=0 or 3).
func (lc *ListenConfig) MultipathTCP() bool {
	if lc.mptcp != 0 {
		return lc.mptcp > 0
	}
	var def net.ListenConfig
	return def.MultipathTCP()
}

// SetMultipathTCP directs Listen to make, or not make, Multipath TCP
// sockets where the OS has them, overriding net's default and GODEBUG, as
// [net.ListenConfig.SetMultipathTCP] does. Every socket of the listener
// (guards included) is then MPTCP, or TCP where the kernel lacks or
// refuses MPTCP; ListenPacket is not affected.
func (lc *ListenConfig) SetMultipathTCP(use bool) {
	lc.mptcp = -1
	if use {
		lc.mptcp = 1
	}
}

// Listen announces on the local network address, on both address families
// where the address calls for it.
//
// The network must be "tcp", "tcp4" or "tcp6"; "tcp4" and "tcp6" give one
// socket of that family. With "tcp", the address decides:
//   - a wildcard host ("", "0.0.0.0", "::"): both families on the same
//     port, as the Mode says;
//   - "localhost": 127.0.0.1 and ::1 on the same port, never resolved
//     through DNS;
//   - a literal IP address: that address alone, an IPv4-mapped one
//     (::ffff:a.b.c.d) as the IPv4 address; an IPv6 one may carry a zone;
//   - any other host name: every address it resolves to, on one port.
//
// The port may be a number or a service name. Port 0 picks one port that
// is free on every address bound, and never one whose IPv4 half another
// socket holds.
//
// Listen is atomic: it returns a listener that holds every socket it
// promised, or an error and nothing held. Errors are *[net.OpError] with
// Op "listen"; errors.Is sees the system error (syscall.EADDRINUSE and so
// on). The context affects only the resolution of host and port names.
func (lc *ListenConfig) Listen(ctx context.Context, network, address string) (*Listener, error) {
	return lc.listen(ctx, hostSystem, network, address)
}

// Listen announces on the local network address with the zero
// [ListenConfig]; see [ListenConfig.Listen].
func Listen(network, address string) (*Listener, error) {
	var lc ListenConfig
	return lc.Listen(context.Background(), network, address)
}

func (lc *ListenConfig) listen(ctx context.Context, sys system, network string, addresses ...string) (*Listener, error) {
	p, err := lc.plan(ctx, sys, tcp, network, addresses...)
	if err != nil {
		return nil, &net.OpError{Op: "listen", Net: network, Err: err}
	}
	r, err := lc.binder(sys).bind(p)
	if err != nil {
		return nil, listenError(tcp, network, err)
	}
	h, err := handOver(r, toTCPListener)
	if err != nil {
		return nil, listenError(tcp, network, err)
	}
	l, err := newListener(sys, h, p.mode(), keepAliveFor(lc))
	if err != nil {
		return nil, &net.OpError{Op: "listen", Net: network, Addr: h.conns[0].Addr(), Err: err}
	}
	return l, nil
}

func (lc *ListenConfig) binder(sys system) *binder {
	attempts := lc.Attempts
	if attempts == 0 {
		attempts = DefaultAttempts
	}
	return &binder{api: sys.api, os: sys.facts, control: lc.Control, attempts: attempts, local: sys.local,
		mptcp: lc.MultipathTCP()}
}

// handedOver is a bound plan in the net package's types: a connection
// (listener or UDP socket) for every endpoint that listens, those asked
// for first, and the bound guards, held as they are.
type handedOver[T io.Closer] struct {
	conns []T
	eps   []endpoint // of conns
	asked int        // conns[:asked] are the endpoints asked for
	held  []socket
}

// handOver turns the bound sockets that listen into the net package's
// types with conv, which takes ownership of its socket. On error it closes
// everything, converted or not.
func handOver[T io.Closer](r bound, conv func(socket) (T, error)) (handedOver[T], error) {
	var h handedOver[T]
	for i, s := range r.socks {
		ep := r.eps[i]
		if !ep.listens() {
			h.held = append(h.held, s)
			continue
		}
		c, err := conv(s)
		if err != nil {
			closeAll(h.conns)
			for _, s := range h.held {
				s.close()
			}
			for _, s := range r.socks[i+1:] {
				s.close()
			}
			return handedOver[T]{}, &bindError{role: ep.role(), fam: ep.family(), addr: netip.AddrPortFrom(ep.addr, r.port), err: err}
		}
		h.conns = append(h.conns, c)
		h.eps = append(h.eps, ep)
		if ep.guard == asked {
			h.asked++
		}
	}
	return h, nil
}

// closeHeld closes the held guards.
func closeHeld(held []socket) {
	for _, s := range held {
		s.close()
	}
}

// mainAddr returns the address that Addr and LocalAddr report: the IPv6
// wildcard where a wildcard is served on both families, as net.Listen
// reports it (and connecting to it reaches the listener on FreeBSD, which
// refuses connections to 0.0.0.0 unless net.inet.ip.connect_inaddr_wild is
// set), else the first address, IPv4 where there is one.
func mainAddr(addrs []net.Addr, eps []endpoint) net.Addr {
	if len(eps) == 2 && eps[0].addr.IsUnspecified() && eps[1].addr.IsUnspecified() {
		return addrs[1]
	}
	return addrs[0]
}

// closeAll closes every one of cs and returns the first error.
func closeAll[T io.Closer](cs []T) error {
	var first error
	for _, c := range cs {
		if err := c.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

func toTCPListener(s socket) (*net.TCPListener, error) {
	ts, ok := s.(tcpSocket)
	if !ok {
		s.close()
		return nil, errors.New("dualstack: socket cannot become a TCP listener")
	}
	return ts.tcpListener()
}

// listenError wraps a failure of the binding algorithms in the
// *net.OpError that Listen and ListenPacket return, with the address being
// bound.
func listenError(pr proto, network string, err error) error {
	oe := &net.OpError{Op: "listen", Net: network, Err: err}
	var be *bindError
	if errors.As(err, &be) {
		if pr == udp {
			oe.Addr = net.UDPAddrFromAddrPort(be.addr)
		} else {
			oe.Addr = net.TCPAddrFromAddrPort(be.addr)
		}
	}
	return oe
}

// Listener is a TCP listener on one port, on one or several sockets. It
// implements [net.Listener]. Accepted connections are *[net.TCPConn], or in
// Single mode a [Conn] that reports IPv4 peers unmapped.
//
// On macOS and FreeBSD the listener also holds guard sockets on its port,
// which Addrs does not list: the loopback address of each family that it
// serves on a wildcard, listening, and the wildcard of each family that it
// serves on specific addresses only, bound. They keep later programs from
// binding those addresses on the port and taking its traffic; connections
// to a loopback guard are the listener's own, and Accept returns them as
// it would from the wildcard socket.
type Listener struct {
	lns      []*net.TCPListener // the sockets asked for, then the listening guards
	addrs    []net.Addr         // of the sockets asked for
	addr     net.Addr
	held     []socket // the bound guards
	heldOnce sync.Once
	mode     Mode
	ka       keepAlive
	m        acceptor // nil with one socket
}

var _ net.Listener = (*Listener)(nil)

// newListener makes a listener of h. On error it closes everything.
func newListener(sys system, h handedOver[*net.TCPListener], mode Mode, ka keepAlive) (*Listener, error) {
	l := &Listener{lns: h.conns, held: h.held, mode: mode, ka: ka}
	for _, ln := range h.conns[:h.asked] {
		l.addrs = append(l.addrs, ln.Addr())
	}
	l.addr = mainAddr(l.addrs, h.eps[:h.asked])
	if len(h.conns) > 1 {
		m, err := sys.merge(h.conns, l.addr)
		if err != nil {
			closeAll(h.conns)
			closeHeld(h.held)
			return nil, err
		}
		l.m = m
	}
	return l, nil
}

// Accept waits for and returns the next connection, from whichever socket
// has one; no socket starves another. A temporary error of one socket
// (EMFILE, say) is returned as that socket's *[net.OpError], and the
// socket goes on accepting after it.
func (l *Listener) Accept() (net.Conn, error) {
	if !l.ok() {
		return nil, errZero("accept", "tcp")
	}
	var (
		c   *net.TCPConn
		err error
	)
	if l.m != nil {
		c, err = l.m.accept()
	} else {
		c, err = l.lns[0].AcceptTCP()
	}
	if err != nil {
		return nil, err
	}
	l.ka.apply(c)
	if l.mode == Single {
		return Conn{c}, nil
	}
	return c, nil
}

// Close closes every socket of the listener. Blocked and later Accept
// calls return an error for which errors.Is(err, net.ErrClosed) holds;
// connections accepted from the kernel but not yet returned by Accept are
// closed. Close returns once no goroutine of the listener is left.
// Closing twice returns an error wrapping net.ErrClosed.
func (l *Listener) Close() error {
	if !l.ok() {
		return errZero("close", "tcp")
	}
	l.heldOnce.Do(func() { closeHeld(l.held) })
	if l.m != nil {
		return l.m.close()
	}
	return l.lns[0].Close()
}

// Addr returns the listener's address, as net.Listen would report it:
// [::]:P for a wildcard served on both families, otherwise the first of
// Addrs (IPv4 where there is one). Dialing it reaches this listener where
// the OS lets a connection to a wildcard address reach the host. It is nil
// for a Listener that Listen did not return.
func (l *Listener) Addr() net.Addr {
	if !l.ok() {
		return nil
	}
	return l.addr
}

// Addrs returns every address the listener is bound to, IPv4 first, all
// on one port. It returns a new slice on each call.
func (l *Listener) Addrs() []net.Addr {
	if !l.ok() {
		return nil
	}
	return append([]net.Addr(nil), l.addrs...)
}

// Mode returns the mode in force: Single when one dual-stack socket serves
// both families, Separate otherwise (one socket a family, or a single
// socket of one family). It is never Auto for a Listener that Listen
// returned.
func (l *Listener) Mode() Mode {
	if !l.ok() {
		return Auto
	}
	return l.mode
}

// SetDeadline sets the deadline of Accept, as on a [net.TCPListener]: a
// blocked or later Accept past the deadline returns an error whose
// Timeout method reports true. The zero time means no deadline.
func (l *Listener) SetDeadline(t time.Time) error {
	if !l.ok() {
		return errZero("set", "tcp")
	}
	if l.m != nil {
		return l.m.setDeadline(t)
	}
	return l.lns[0].SetDeadline(t)
}

// ok reports whether l is a listener that Listen returned: the zero
// Listener, like net's, has no socket, and its methods fail with EINVAL.
func (l *Listener) ok() bool { return l != nil && len(l.lns) > 0 }

// errZero is the error of a method called on a zero Listener or
// PacketConn.
func errZero(op, network string) error {
	return &net.OpError{Op: op, Net: network, Err: syscall.EINVAL}
}

// keepAlive is the keep-alive setting that Accept applies to a connection
// when the ListenConfig asked for something other than the default, which
// the net package's listener has already applied.
type keepAlive struct {
	set bool
	cfg net.KeepAliveConfig // cfg.Enable false: disable
}

func keepAliveFor(lc *ListenConfig) keepAlive {
	switch {
	case lc.KeepAliveConfig.Enable:
		return keepAlive{set: true, cfg: lc.KeepAliveConfig}
	case lc.KeepAlive < 0:
		return keepAlive{set: true}
	case lc.KeepAlive > 0:
		return keepAlive{set: true, cfg: net.KeepAliveConfig{Enable: true, Idle: lc.KeepAlive}}
	}
	return keepAlive{}
}

// apply sets the keep-alive of c; like the net package, it ignores errors.
func (k keepAlive) apply(c *net.TCPConn) {
	switch {
	case !k.set:
	case k.cfg.Enable:
		c.SetKeepAliveConfig(k.cfg)
	default:
		c.SetKeepAlive(false)
	}
}
