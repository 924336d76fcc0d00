//go:build linux || darwin || dragonfly || freebsd || netbsd || openbsd

package dualstack_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dualstack-go/dualstack"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// The scenarios of this file own a network stack (ownKernel): a private
// namespace on Linux, the harness's VM on FreeBSD. Everything that opens a
// socket runs on the test's own goroutine. Each prints a FIGURE line that
// CI repeats.

// sock describes a socket of another program: its protocol, address and
// options, as raw system calls make it.
type sock struct {
	udp  bool
	host string // "0.0.0.0", "127.0.0.1", "::", "::1"
	dual bool   // for "::": IPV6_V6ONLY cleared
	opts []int  // SOL_SOCKET options set to 1 before bind
}

func (s sock) String() string {
	var b strings.Builder
	if s.udp {
		b.WriteString("udp ")
	}
	b.WriteString(s.host)
	if s.host == "::" && !s.dual {
		b.WriteString(" v6only")
	}
	for _, o := range s.opts {
		b.WriteString(" " + optName(o))
	}
	return b.String()
}

func optName(o int) string {
	switch o {
	case unix.SO_REUSEADDR:
		return "SO_REUSEADDR"
	case unix.SO_REUSEPORT:
		return "SO_REUSEPORT"
	case soReusePortLB:
		return "SO_REUSEPORT_LB"
	}
	return strconv.Itoa(o)
}

// reuseOptions are the sets of reuse options other programs bind with:
// none, each alone, and SO_REUSEADDR with SO_REUSEPORT, as many servers
// set them.
func reuseOptions() [][]int {
	opts := [][]int{nil, {unix.SO_REUSEADDR}, {unix.SO_REUSEPORT}, {unix.SO_REUSEADDR, unix.SO_REUSEPORT}}
	if soReusePortLB != 0 {
		opts = append(opts, []int{soReusePortLB})
	}
	return opts
}

// otherAddrs are the addresses other programs bind: each loopback and
// wildcard, the IPv6 wildcard both IPv6-only and dual-stack, and the IPv4
// ones again as IPv4-mapped addresses of an AF_INET6 socket.
var otherAddrs = []sock{
	{host: "127.0.0.1"}, {host: "0.0.0.0"}, {host: "::1"}, {host: "::"}, {host: "::", dual: true},
	{host: "::ffff:127.0.0.1", dual: true}, {host: "::ffff:0.0.0.0", dual: true},
}

// open makes the socket and binds it to port (0: ephemeral), returning the
// descriptor and the port bound.
func (s sock) open(port int) (int, int, error) {
	ip := netip.MustParseAddr(s.host)
	af, typ := unix.AF_INET, unix.SOCK_STREAM
	if ip.Is6() {
		af = unix.AF_INET6
	}
	if s.udp {
		typ = unix.SOCK_DGRAM
	}
	fd, err := unix.Socket(af, typ, 0)
	if err != nil {
		return -1, 0, err
	}
	unix.CloseOnExec(fd)
	if af == unix.AF_INET6 {
		v6only := 1
		if s.dual {
			v6only = 0
		}
		err = unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, v6only)
	}
	for _, o := range s.opts {
		if err == nil {
			err = unix.SetsockoptInt(fd, unix.SOL_SOCKET, o, 1)
		}
	}
	if err == nil {
		err = unix.Bind(fd, rawAddr(netip.AddrPortFrom(ip, uint16(port))))
	}
	if err != nil {
		unix.Close(fd)
		return -1, 0, err
	}
	return fd, localPort(fd), nil
}

func rawAddr(a netip.AddrPort) unix.Sockaddr {
	if a.Addr().Is4() {
		return &unix.SockaddrInet4{Port: int(a.Port()), Addr: a.Addr().As4()}
	}
	return &unix.SockaddrInet6{Port: int(a.Port()), Addr: a.Addr().As16()}
}

func localPort(fd int) int {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return 0
	}
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return sa.Port
	case *unix.SockaddrInet6:
		return sa.Port
	}
	return 0
}

// holderState is what another program does with its bound socket.
type holderState int

const (
	listening holderState = iota
	boundOnly
	connected
	timeWait // connected, then closed by its owner first
)

func (s holderState) String() string {
	return [...]string{"listening", "bound", "connected", "TIME_WAIT"}[s]
}

// stack is the test's network stack with the sockets of other programs,
// all closed at the end of the test.
type stack struct {
	t       testing.TB
	fds     []int
	anchors map[bool]int // a listener outside the range, by family (true: IPv6), that connected holders connect to
}

func newStack(t testing.TB) *stack {
	st := &stack{t: t, anchors: map[bool]int{}}
	t.Cleanup(st.closeAll)
	return st
}

func (st *stack) closeAll() {
	for _, fd := range st.fds {
		unix.Close(fd)
	}
	st.fds = nil
	for _, fd := range st.anchors {
		unix.Close(fd)
	}
	st.anchors = map[bool]int{}
}

// anchorPort is where holders connect: outside every range under test.
const anchorPort = 19950

// hold makes another program's socket s on port in the given state. It
// reports false if the kernel refused the bind or the port.
func (st *stack) hold(s sock, port int, state holderState) bool {
	fd, got, err := s.open(port)
	if err != nil {
		return false
	}
	if port != 0 && got != port {
		st.t.Fatalf("%v bound port %d, not %d", s, got, port)
	}
	keep := true
	switch {
	case state == listening && !s.udp:
		keep = unix.Listen(fd, 64) == nil
	case state == connected, state == timeWait:
		peer, err := st.connectAnchor(fd, s)
		if err != nil {
			keep = false
			break
		}
		if state == timeWait {
			// Ours closes first, then the anchor's end: ours is left in
			// TIME_WAIT holding the port.
			unix.Close(fd)
			fd = -1
		}
		if peer >= 0 {
			unix.Close(peer)
		}
	}
	if !keep {
		if fd >= 0 {
			unix.Close(fd)
		}
		return false
	}
	if fd >= 0 {
		st.fds = append(st.fds, fd)
	}
	return true
}

// connectAnchor connects fd to the anchor of its family and returns the
// anchor's end of the connection (-1 for UDP).
func (st *stack) connectAnchor(fd int, s sock) (int, error) {
	v6 := netip.MustParseAddr(s.host).Is6()
	host := netip.MustParseAddr("127.0.0.1")
	if v6 {
		host = netip.IPv6Loopback()
	}
	dst := netip.AddrPortFrom(host, anchorPort)
	if s.udp {
		return -1, unix.Connect(fd, rawAddr(dst))
	}
	ln, ok := st.anchors[v6]
	if !ok {
		var err error
		ln, _, err = sock{host: host.String(), opts: []int{unix.SO_REUSEADDR}}.open(anchorPort)
		if err != nil {
			st.t.Fatalf("anchor %v: %v", dst, err)
		}
		if err := unix.Listen(ln, 64); err != nil {
			st.t.Fatalf("anchor listen: %v", err)
		}
		st.anchors[v6] = ln
	}
	if err := unix.Connect(fd, rawAddr(dst)); err != nil {
		return -1, err
	}
	peer, _, err := unix.Accept(ln)
	return peer, err
}

// randomHolders binds between two and nine sockets of other programs, of
// random kinds and states, on random ports of lo..hi (some ephemeral),
// and returns what it holds.
func (st *stack) randomHolders(rng *mrand.Rand, lo, hi int, udp bool) []string {
	var held []string
	opts := reuseOptions()
	for range 2 + rng.IntN(8) {
		s := otherAddrs[rng.IntN(len(otherAddrs))]
		s.udp = udp
		s.opts = opts[rng.IntN(len(opts))]
		state := holderState(rng.IntN(4))
		switch {
		case udp && state == listening, udp && state == timeWait:
			state = boundOnly // UDP sockets are read or not; no TIME_WAIT
		case state == timeWait && runtime.GOOS == "linux":
			// Linux keeps TIME_WAIT for a minute: it would soon hold the
			// whole narrowed range.
			state = connected
		}
		port := 0
		if rng.IntN(3) != 0 {
			port = lo + rng.IntN(hi-lo+1)
		}
		if st.hold(s, port, state) {
			held = append(held, fmt.Sprintf("%v %v", s, state))
		}
	}
	return held
}

// reachWait is how long a scenario waits for a connection or datagram to
// reach a listener of ours: on loopback it is there before the dial
// returns, so this is a bound for a slow machine. controlWait is the same
// for controls, which are expected to miss often.
const (
	reachWait   = time.Second
	controlWait = 100 * time.Millisecond
)

// acceptor is a TCP listener that can be given a deadline: ours, or
// net.Listen's.
type acceptor interface {
	net.Listener
	SetDeadline(time.Time) error
}

// exchangeWithin proves, on the calling goroutine, that a connection to
// host on ln's port reaches ln: it dials from a fixed port outside the
// ephemeral range, accepts within wait, and has the accepted side echo a
// token. Both ends close with a reset, so no TIME_WAIT keeps the port. A
// connection that another socket took is an error within wait.
func exchangeWithin(ln acceptor, host string, wait time.Duration) error {
	port := ln.Addr().(*net.TCPAddr).Port
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(host), Port: 43000}, Timeout: ioTimeout}
	c, err := d.Dial("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return err
	}
	defer func() {
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
	}()
	ln.SetDeadline(time.Now().Add(wait))
	defer ln.SetDeadline(time.Time{})
	s, err := ln.Accept()
	if err != nil {
		return fmt.Errorf("the connection did not reach this listener: %w", err)
	}
	defer func() {
		s.(interface{ SetLinger(int) error }).SetLinger(0)
		s.Close()
	}()
	if s.RemoteAddr().String() != c.LocalAddr().String() {
		return fmt.Errorf("accepted %v, dialed from %v", s.RemoteAddr(), c.LocalAddr())
	}
	token := rand.Text()
	c.SetDeadline(time.Now().Add(ioTimeout))
	s.SetDeadline(time.Now().Add(ioTimeout))
	if _, err := fmt.Fprintln(c, token); err != nil {
		return err
	}
	got, err := bufio.NewReader(s).ReadString('\n')
	if err != nil || strings.TrimSpace(got) != token {
		return fmt.Errorf("token %q came back as %q: %v", token, got, err)
	}
	return nil
}

// udpExchangeWithin is exchangeWithin for UDP: a datagram from a fixed
// client port to host on pc's port must be read by pc within wait, carry
// the token, come from the client, and pc's answer must reach the client
// from the address it sent to.
func udpExchangeWithin(pc *dualstack.PacketConn, host string, wait time.Duration) error {
	port := pc.LocalAddr().(*net.UDPAddr).Port
	laddr := &net.UDPAddr{IP: net.ParseIP(host), Port: 44000}
	c, err := net.DialUDP("udp", laddr, &net.UDPAddr{IP: net.ParseIP(host), Port: port})
	if err != nil {
		return err
	}
	defer c.Close()
	token := rand.Text()
	if _, err := c.Write([]byte(token)); err != nil {
		return err
	}
	pc.SetReadDeadline(time.Now().Add(wait))
	defer pc.SetReadDeadline(time.Time{})
	buf := make([]byte, 128)
	n, src, err := pc.ReadFromUDPAddrPort(buf)
	if err != nil {
		return fmt.Errorf("the datagram did not reach this PacketConn: %w", err)
	}
	if string(buf[:n]) != token || src != c.LocalAddr().(*net.UDPAddr).AddrPort() {
		return fmt.Errorf("read %q from %v, sent %q from %v", buf[:n], src, token, c.LocalAddr())
	}
	if _, err := pc.WriteToUDPAddrPort([]byte("re "+token), src); err != nil {
		return err
	}
	c.SetReadDeadline(time.Now().Add(ioTimeout))
	n, err = c.Read(buf)
	if err != nil || string(buf[:n]) != "re "+token {
		return fmt.Errorf("no answer from %s: %q %v", host, buf[:n], err)
	}
	return nil
}

// listenCase is one way the scenarios listen.
type listenCase struct {
	name    string
	mode    dualstack.Mode
	address string
	control bool // net.Listen("tcp", address), the bug's control
}

var scenarioCases = []listenCase{
	{"Auto :0", dualstack.Auto, ":0", false},
	{"Separate :0", dualstack.Separate, ":0", false},
	{"Single :0", dualstack.Single, ":0", false},
	{"Auto localhost:0", dualstack.Auto, "localhost:0", false},
	{`net.Listen("tcp", ":0")`, 0, ":0", true},
}

func scenarioSeed(t testing.TB) *mrand.Rand {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("DUALSTACK_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("seed %d (set DUALSTACK_SEED to replay)", seed)
	return mrand.New(mrand.NewPCG(seed, 11))
}

// figure prints a line that CI collects and repeats.
func figure(format string, args ...any) {
	fmt.Printf("FIGURE "+runtime.GOOS+" "+format+"\n", args...)
}

// TestScenarioHoldersBefore narrows the ephemeral range to ten ports and,
// round after round, fills part of it with other programs' sockets of
// every kind: AF_INET on 0.0.0.0 and 127.0.0.1, AF_INET6 on [::] (IPv6-only
// and dual-stack) and [::1], each with no reuse option, SO_REUSEADDR,
// SO_REUSEPORT, both, or (FreeBSD) SO_REUSEPORT_LB; listening, bound only,
// connected, or in TIME_WAIT. Then it listens on port 0 in each mode (Auto,
// Separate, Single, localhost) and with ListenPacket, and proves every
// listener by a token exchange over 127.0.0.1 and ::1: no connection may
// reach another socket, and no listener may hold one family without the
// other. net.Listen("tcp", ":0") runs in the same rounds as the control;
// on FreeBSD it must show the misroute that this package prevents.
func TestScenarioHoldersBefore(t *testing.T) {
	const lo, hi = 42100, 42109
	rounds, perCase, packets := 50, 20, 6
	if testing.Short() {
		rounds = 10
	}
	ownKernel(t)
	ownPortRange(t, lo, hi)
	noResetLimit(t)
	rng := scenarioSeed(t)

	listens, misroutes, halves, refused := 0, 0, 0, 0
	controls, controlMisroutes := 0, 0
	report := func(format string, args ...any) {
		if misroutes+halves <= 5 {
			t.Errorf(format, args...)
		}
	}
	for round := range rounds {
		st := newStack(t)
		held := st.randomHolders(rng, lo, hi, false)
		for _, c := range scenarioCases {
			for range perCase {
				var ln acceptor
				var err error
				if c.control {
					var l net.Listener
					l, err = net.Listen("tcp", c.address)
					if err == nil {
						ln = l.(*net.TCPListener)
					}
				} else {
					ln, err = (&dualstack.ListenConfig{Mode: c.mode}).Listen(context.Background(), "tcp", c.address)
				}
				if err != nil {
					requireFullRange(t, err, "%s round %d", c.name, round)
					refused++
					continue
				}
				wait := reachWait
				if c.control {
					wait = controlWait
				}
				for _, host := range []string{"127.0.0.1", "::1"} {
					if err := exchangeWithin(ln, host, wait); err != nil {
						if c.control {
							controlMisroutes++
							continue
						}
						misroutes++
						report("round %d %s on %v over %s: %v\nholders: %v", round, c.name, ln.Addr(), host, err, held)
					}
				}
				if c.control {
					controls++
				} else {
					listens++
					if l := ln.(*dualstack.Listener); !samePort(l.Addrs()) {
						halves++
						report("round %d %s: sockets on several ports: %v", round, c.name, l.Addrs())
					}
				}
				require.NoError(t, ln.Close())
			}
		}
		st.closeAll()

		// UDP, with UDP holders.
		st = newStack(t)
		held = st.randomHolders(rng, lo, hi, true)
		for i := range packets {
			c := scenarioCases[(round*packets+i)%4]
			pc, err := (&dualstack.ListenConfig{Mode: c.mode}).ListenPacket(context.Background(), "udp", c.address)
			if err != nil {
				requireFullRange(t, err, "udp %s round %d", c.name, round)
				refused++
				continue
			}
			listens++
			if !samePort(pc.Addrs()) {
				halves++
				report("round %d udp %s: sockets on several ports: %v", round, c.name, pc.Addrs())
			}
			for _, host := range []string{"127.0.0.1", "::1"} {
				if err := udpExchangeWithin(pc, host, reachWait); err != nil {
					misroutes++
					report("round %d udp %s on %v over %s: %v\nholders: %v", round, c.name, pc.LocalAddr(), host, err, held)
				}
			}
			require.NoError(t, pc.Close())
		}
		st.closeAll()
	}
	t.Logf("%d listens (TCP and UDP), %d misroutes, %d half-listeners, %d refused for a full range; net.Listen control: %d listens, %d misroutes",
		listens, misroutes, halves, refused, controls, controlMisroutes)
	figure("scenarios: %d listens, %d misroutes, net.Listen control %d misroutes", listens, misroutes+halves, controlMisroutes)
	assert.Zero(t, misroutes+halves)
	assert.GreaterOrEqual(t, listens, rounds*perCase*4/2, "too many refusals to mean anything")
	if runtime.GOOS == "freebsd" {
		assert.Positive(t, controlMisroutes, "the control must show the bug on this kernel")
	}
}

// requireFullRange fails unless err says that no port of the range was
// free: EADDRINUSE, or EADDRNOTAVAIL from the BSDs' port search.
func requireFullRange(t testing.TB, err error, format string, args ...any) {
	t.Helper()
	if !errors.Is(err, unix.EADDRINUSE) && !errors.Is(err, unix.EADDRNOTAVAIL) {
		t.Fatalf(format+": only a full range may refuse: %v", append(args, err)...)
	}
}

func samePort(addrs []net.Addr) bool {
	for _, a := range addrs {
		if portOfAddr(a) != portOfAddr(addrs[0]) {
			return false
		}
	}
	return true
}

func portOfAddr(a net.Addr) int {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.Port
	case *net.UDPAddr:
		return a.Port
	}
	return -1
}

// laterKind is an ordinary later program's listen: net.Listen, or raw
// system calls with a reuse option, on port 0 or on our port.
type laterKind struct {
	name     string
	network  string // for net.Listen; "" for raw
	address  string
	raw      sock
	explicit bool
}

func laterKinds() []laterKind {
	var ks []laterKind
	for _, a := range []struct{ network, address string }{
		{"tcp4", "127.0.0.1"}, {"tcp6", "[::1]"}, {"tcp4", "0.0.0.0"}, {"tcp6", "[::]"}, {"tcp", ""}, {"tcp", "localhost"},
	} {
		for _, explicit := range []bool{false, true} {
			ks = append(ks, laterKind{name: fmt.Sprintf("net.Listen(%q, %q)", a.network, a.address+":P"), network: a.network, address: a.address, explicit: explicit})
		}
	}
	for _, s := range otherAddrs {
		for _, o := range reuseOptions() {
			for _, explicit := range []bool{false, true} {
				s.opts = o
				ks = append(ks, laterKind{name: s.String(), raw: s, explicit: explicit})
			}
		}
	}
	return ks
}

// listen starts the later program's listener on port (0: ephemeral); it
// returns a closer and the port it holds.
func (k laterKind) listen(port int) (func(), int, error) {
	if k.network != "" {
		ln, err := net.Listen(k.network, net.JoinHostPort(strings.Trim(k.address, "[]"), strconv.Itoa(port)))
		if err != nil {
			return nil, 0, err
		}
		return func() { ln.Close() }, ln.Addr().(*net.TCPAddr).Port, nil
	}
	fd, got, err := k.raw.open(port)
	if err != nil {
		return nil, 0, err
	}
	if err := unix.Listen(fd, 64); err != nil {
		unix.Close(fd)
		return nil, 0, err
	}
	return func() { unix.Close(fd) }, got, nil
}

// TestScenarioLaterListens: a listener of ours holds port P in a range
// narrowed to ten ports; then ordinary later programs listen, one after
// another, until the range is full: net.Listen on 127.0.0.1, [::1],
// 0.0.0.0, [::], the wildcard and localhost, and raw sockets on every
// loopback and wildcard address with each reuse option, on port 0 or on
// P itself. After each one that holds P, both families must still reach
// our listener. On FreeBSD, without the guards, net.Listen("tcp4",
// "127.0.0.1:0") lands on P and takes its IPv4 traffic.
func TestScenarioLaterListens(t *testing.T) {
	const lo, hi = 42200, 42209
	rounds := 60
	if testing.Short() {
		rounds = 20
	}
	ownKernel(t)
	ownPortRange(t, lo, hi)
	noResetLimit(t)
	rng := scenarioSeed(t)
	kinds := laterKinds()
	// The control: the same listeners without guard sockets, as this
	// package bound them before.
	var results [2]struct{ later, onPort, took int }
	for i, listen := range []func(*dualstack.ListenConfig, context.Context, string, string) (*dualstack.Listener, error){
		(*dualstack.ListenConfig).Listen, dualstack.ListenUnguarded,
	} {
		r := &results[i]
		for round := range rounds {
			c := scenarioCases[round%4]
			ln, err := listen(&dualstack.ListenConfig{Mode: c.mode}, context.Background(), "tcp", c.address)
			require.NoError(t, err, c.name)
			port := portOf(t, ln.Addr())
			var closers []func()
			for range 40 {
				k := kinds[rng.IntN(len(kinds))]
				want := 0
				if k.explicit {
					want = port
				}
				closeIt, got, err := k.listen(want)
				if err != nil {
					continue // refused: the range is full or the port taken
				}
				closers = append(closers, closeIt)
				r.later++
				if got != port {
					continue
				}
				r.onPort++
				wait := reachWait
				if i == 1 {
					wait = controlWait
				}
				for _, host := range []string{"127.0.0.1", "::1"} {
					if err := exchangeWithin(ln, host, wait); err != nil {
						r.took++
						if i == 0 && r.took <= 5 {
							t.Errorf("round %d: %s on port %d of %s took traffic over %s: %v", round, k.name, port, c.name, host, err)
						}
					}
				}
			}
			for _, f := range closers {
				f()
			}
			require.NoError(t, ln.Close())
		}
	}
	t.Logf("%d later listens, %d of them on our port, %d took our traffic; control without guards: %d later listens, %d on our port, %d took its traffic",
		results[0].later, results[0].onPort, results[0].took, results[1].later, results[1].onPort, results[1].took)
	figure("later listens: %d listens, %d took our traffic", results[0].later, results[0].took)
	assert.Zero(t, results[0].took)
	if guardedOS {
		assert.Positive(t, results[1].took, "without guards, a later listen must take traffic on this kernel")
	}
}

// TestLaterBinderMatrix binds, next to each kind of listener of ours, every
// loopback and wildcard address on its port with each reuse option, TCP
// and UDP, as a later program would on purpose; where the kernel lets the
// bind succeed, the socket listens (TCP), and both families must still
// reach our listener.
func TestLaterBinderMatrix(t *testing.T) {
	ownKernel(t)
	noResetLimit(t)
	both, v4, v6 := []string{"127.0.0.1", "::1"}, []string{"127.0.0.1"}, []string{"::1"}
	kinds := []struct {
		name, network, address string
		mode                   dualstack.Mode
		hosts                  []string // the loopbacks the listener serves
	}{
		{"Auto :0", "tcp", ":0", dualstack.Auto, both},
		{"Separate :0", "tcp", ":0", dualstack.Separate, both},
		{"Single :0", "tcp", ":0", dualstack.Single, both},
		{"Auto localhost:0", "tcp", "localhost:0", dualstack.Auto, both},
		{"Auto 127.0.0.1:0", "tcp", "127.0.0.1:0", dualstack.Auto, v4},
		{"Auto [::1]:0", "tcp", "[::1]:0", dualstack.Auto, v6},
		{"tcp4 :0", "tcp4", ":0", dualstack.Auto, v4},
		{"tcp6 :0", "tcp6", ":0", dualstack.Auto, v6},
		{"UDP Auto :0", "udp", ":0", dualstack.Auto, both},
		{"UDP Single :0", "udp", ":0", dualstack.Single, both},
		{"UDP Auto localhost:0", "udp", "localhost:0", dualstack.Auto, both},
	}
	cases, bound, took, controlTook := 0, 0, 0, 0
	for _, guarded := range []bool{true, false} {
		for _, kind := range kinds {
			for _, a := range otherAddrs {
				for _, o := range reuseOptions() {
					cases++
					lc := dualstack.ListenConfig{Mode: kind.mode}
					s := a
					s.opts, s.udp = o, strings.HasPrefix(kind.network, "udp")
					var reach func(host string) error
					var port int
					var closeOurs func() error
					listen, listenPacket := (*dualstack.ListenConfig).Listen, (*dualstack.ListenConfig).ListenPacket
					wait := reachWait
					if !guarded {
						listen, listenPacket = dualstack.ListenUnguarded, dualstack.ListenPacketUnguarded
						wait = controlWait
					}
					if strings.HasPrefix(kind.network, "udp") {
						pc, err := listenPacket(&lc, context.Background(), kind.network, kind.address)
						require.NoError(t, err)
						port, closeOurs = portOf(t, pc.LocalAddr()), pc.Close
						reach = func(host string) error { return udpExchangeWithin(pc, host, wait) }
					} else {
						ln, err := listen(&lc, context.Background(), kind.network, kind.address)
						require.NoError(t, err)
						port, closeOurs = portOf(t, ln.Addr()), ln.Close
						reach = func(host string) error { return exchangeWithin(ln, host, wait) }
					}
					fd, _, err := s.open(port)
					if err == nil {
						if guarded {
							bound++
						}
						if !s.udp {
							unix.Listen(fd, 64)
						}
						for _, host := range kind.hosts {
							if err := reach(host); err != nil {
								if !guarded {
									controlTook++
									continue
								}
								took++
								t.Errorf("%s on port %d: a later %v took traffic over %s: %v", kind.name, port, s, host, err)
							}
						}
						unix.Close(fd)
					}
					require.NoError(t, closeOurs())
				}
			}
		}
	}
	cases /= 2
	t.Logf("%d cases, %d later binds the kernel allowed, %d took our traffic; without guards, %d took it", cases, bound, took, controlTook)
	figure("later binders: %d cases, %d took our traffic", cases, took)
	assert.Zero(t, took)
	if guardedOS {
		assert.Positive(t, controlTook, "without guards, a later binder must take traffic on this kernel")
	}
}

// Mode is dualstack.Mode, for short table fields.
type Mode = dualstack.Mode

// TestCrowdedPorts narrows the ephemeral range to ten ports and
// holds nine of them with other programs' listeners of every kind:
// 127.0.0.1, 0.0.0.0, [::1], IPv6-only [::], and SO_REUSEPORT ones. Two
// thousand Listen(":0") calls in each mode all land on the free port, and
// a token exchange over 127.0.0.1 and ::1 reaches the listener each time.
// With the last port held too, Listen fails with EADDRINUSE after its
// attempts and holds nothing.
func TestCrowdedPorts(t *testing.T) {
	const lo, hi, free = 42000, 42009, 42005
	calls := 2000
	if testing.Short() || slowKernel {
		calls = 200
	}
	ownKernel(t)
	ownPortRange(t, lo, hi)
	noResetLimit(t)

	holders := map[int][]holder{
		42000: {{"tcp4", "127.0.0.1", 0}},
		42001: {{"tcp4", "0.0.0.0", 0}},
		42002: {{"tcp6", "::1", 0}},
		42003: {{"tcp6", "::", 0}},
		42004: {{"tcp4", "127.0.0.1", 0}, {"tcp6", "::1", 0}},
		42006: {{"tcp4", "127.0.0.1", unix.SO_REUSEPORT}},
		42007: {{"tcp6", "::", unix.SO_REUSEPORT}, {"tcp4", "127.0.0.1", unix.SO_REUSEADDR}},
		42008: {{"tcp6", "::1", unix.SO_REUSEPORT}},
		42009: {{"tcp4", "0.0.0.0", unix.SO_REUSEADDR}, {"tcp6", "::1", 0}},
	}
	for port, hs := range holders {
		for _, h := range hs {
			ln := h.listen(t, port)
			defer ln.Close()
		}
	}

	exchanges := 0
	for _, mode := range modes {
		lc := dualstack.ListenConfig{Mode: mode}
		for i := range calls {
			ln, err := lc.Listen(context.Background(), "tcp", ":0")
			require.NoError(t, err, "%v call %d", mode, i)
			for _, a := range ln.Addrs() {
				require.Equal(t, free, a.(*net.TCPAddr).Port, "%v call %d landed on a held port", mode, i)
			}
			for _, host := range []string{"127.0.0.1", "::1"} {
				require.NoError(t, exchangeWithin(ln, host, ioTimeout), "%v call %d over %s", mode, i, host)
				exchanges++
			}
			require.NoError(t, ln.Close())
		}
	}
	t.Logf("%d listens, %d token exchanges, 0 misroutes", calls*len(modes), exchanges)

	// The last free port taken too.
	last := holder{"tcp6", "::", 0}.listen(t, free)
	defer last.Close()
	for _, mode := range modes {
		checkFDs := requireNoFDLeak(t)
		lc := dualstack.ListenConfig{Mode: mode, Attempts: 5}
		ln, err := lc.Listen(context.Background(), "tcp", ":0")
		require.Error(t, err, mode)
		assert.Nil(t, ln)
		// Linux: the other half of each port picked was taken; the BSDs:
		// with the ports of failed attempts held, none was left.
		requireFullRange(t, err, "%v", mode)
		var oe *net.OpError
		require.ErrorAs(t, err, &oe)
		assert.Regexp(t, `gave up after \d attempts|no free port left in the ephemeral range`, err.Error(), mode)
		checkFDs()
	}
}

// holder is another program's listener.
type holder struct {
	network, host string
	opt           int // a socket option to set: SO_REUSEPORT, SO_REUSEADDR or 0
}

func (h holder) listen(t testing.TB, port int) net.Listener {
	t.Helper()
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var err error
		c.Control(func(fd uintptr) {
			if h.opt != 0 {
				err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, h.opt, 1)
			}
		})
		return err
	}}
	ln, err := lc.Listen(context.Background(), h.network, net.JoinHostPort(h.host, fmt.Sprint(port)))
	require.NoError(t, err, "holder %v on %d", h, port)
	return ln
}

// TestReusePortCannotShadow: a socket with SO_REUSEPORT on 127.0.0.1:P or
// [::1]:P, held before or bound after, never takes a connection from a
// listener this package returns.
func TestReusePortCannotShadow(t *testing.T) {
	ownKernel(t)
	noResetLimit(t)
	const port = 44000
	sneaky := []holder{
		{"tcp4", "127.0.0.1", unix.SO_REUSEPORT},
		{"tcp6", "::1", unix.SO_REUSEPORT},
		{"tcp4", "0.0.0.0", unix.SO_REUSEPORT},
	}
	for _, mode := range modes {
		// Held before: the explicit port is refused.
		for _, h := range sneaky {
			hl := h.listen(t, port)
			checkFDs := requireNoFDLeak(t)
			_, err := (&dualstack.ListenConfig{Mode: mode}).Listen(context.Background(), "tcp", fmt.Sprintf(":%d", port))
			require.ErrorIs(t, err, syscall.EADDRINUSE, "%v with %v held", mode, h)
			checkFDs()
			hl.Close()
		}

		// Bound after: the kernel refuses it, and both families still
		// reach our listener.
		ln, err := (&dualstack.ListenConfig{Mode: mode}).Listen(context.Background(), "tcp", fmt.Sprintf(":%d", port))
		require.NoError(t, err, mode)
		for _, h := range sneaky {
			fd, err := reusePortBind(h, port)
			if err == nil {
				unix.Close(fd)
			}
			require.ErrorIs(t, err, syscall.EADDRINUSE, "%v: %v bound next to our listener", mode, h)
		}
		for _, host := range []string{"127.0.0.1", "::1"} {
			require.NoError(t, exchangeWithin(ln, host, ioTimeout), "%v over %s", mode, host)
		}
		require.NoError(t, ln.Close())
	}
}

// reusePortBind binds and listens a socket with SO_REUSEPORT and
// SO_REUSEADDR on h's address and port.
func reusePortBind(h holder, port int) (int, error) {
	ip := netip.MustParseAddr(h.host)
	af, sa := unix.AF_INET6, unix.Sockaddr(&unix.SockaddrInet6{Port: port, Addr: ip.As16()})
	if ip.Is4() {
		af, sa = unix.AF_INET, &unix.SockaddrInet4{Port: port, Addr: ip.As4()}
	}
	fd, err := unix.Socket(af, unix.SOCK_STREAM, 0)
	if err != nil {
		return -1, err
	}
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return -1, err
	}
	if err := unix.Listen(fd, 1); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// TestV6OnlyDefault: whatever the kernel's default of IPV6_V6ONLY
// (net.ipv6.bindv6only on Linux, net.inet6.ip6.v6only on the BSDs), every
// mode serves both families, Separate's IPv6 socket is IPv6-only and
// Single's is not: the option is always set, never inherited.
func TestV6OnlyDefault(t *testing.T) {
	ownKernel(t)
	for _, def := range []int{0, 1} {
		ownV6OnlyDefault(t, def)
		fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_STREAM, 0)
		require.NoError(t, err)
		got, err := unix.GetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY)
		unix.Close(fd)
		require.NoError(t, err)
		require.Equal(t, def, got, "a fresh AF_INET6 socket follows the default")

		for _, mode := range modes {
			for _, address := range []string{":0", "[::]:0", "localhost:0"} {
				if mode == dualstack.Single && address == "localhost:0" {
					continue
				}
				v6only := -1
				lc := dualstack.ListenConfig{Mode: mode, Control: func(network, address string, c syscall.RawConn) error {
					if network == "tcp6" && netip.MustParseAddrPort(address).Addr().IsUnspecified() {
						c.Control(func(fd uintptr) { v6only, _ = unix.GetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_V6ONLY) })
					}
					return nil
				}}
				ln, err := lc.Listen(context.Background(), "tcp", address)
				require.NoError(t, err, "default %d: %v %s", def, mode, address)
				for _, host := range []string{"127.0.0.1", "::1"} {
					assert.NoError(t, exchangeWithin(ln, host, reachWait), "default %d: %v %s over %s", def, mode, address, host)
				}
				switch {
				case address == "localhost:0":
				case ln.Mode() == dualstack.Single:
					assert.Equal(t, 0, v6only, "default %d: Single's socket takes IPv4", def)
				default:
					assert.Equal(t, 1, v6only, "default %d: %v's IPv6 socket is IPv6-only", def, mode)
				}
				require.NoError(t, ln.Close())
			}
		}
	}
}

// TestLocalhostIgnoresOtherAddresses: with every port of the range held on
// 127.0.0.2 only, localhost:0 (127.0.0.1 and ::1) still listens, TCP and
// UDP, as net.Listen("tcp4", "127.0.0.1:0") does: the port is picked on
// the addresses asked for, not on wider ones.
func TestLocalhostIgnoresOtherAddresses(t *testing.T) {
	const lo, hi = 42300, 42309
	ownKernel(t)
	ownPortRange(t, lo, hi)
	if c, err := net.ListenPacket("udp4", "127.0.0.2:0"); err != nil {
		t.Skipf("127.0.0.2 is not a local address here: %v", err)
	} else {
		c.Close()
	}
	for p := lo; p <= hi; p++ {
		a := net.JoinHostPort("127.0.0.2", strconv.Itoa(p))
		ln, err := net.Listen("tcp4", a)
		require.NoError(t, err)
		defer ln.Close()
		pc, err := net.ListenPacket("udp4", a)
		require.NoError(t, err)
		defer pc.Close()
	}
	control, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err, "the control: 127.0.0.1 has free ports")
	control.Close()

	for i := range 20 {
		ln, err := dualstack.Listen("tcp", "localhost:0")
		require.NoError(t, err, "listen %d", i)
		for _, host := range []string{"127.0.0.1", "::1"} {
			assert.NoError(t, exchangeWithin(ln, host, reachWait), "%s", host)
		}
		ln.Close()
	}
	pc, err := dualstack.ListenPacket("udp", "localhost:0")
	require.NoError(t, err)
	defer pc.Close()
	for _, host := range []string{"127.0.0.1", "::1"} {
		assert.NoError(t, udpExchangeWithin(pc, host, reachWait), "%s", host)
	}
}
