//go:build rump && linux && cgo

package dualstack

// These tests run NetBSD's binding algorithms against NetBSD's own network
// stack, a rump kernel in this process (internal/rump): the same plans and
// binder as on NetBSD, over a socketAPI that makes rump sockets. Go's net
// package cannot use rump descriptors, so the tests stop at what the
// binder holds and prove it with rump connections and datagrams.
//
//	go run ./internal/rump/cmd/rumptest . -- -test.run NetBSD -test.v

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net/netip"
	"os"
	"strconv"
	"syscall"
	"testing"

	"github.com/dualstack-go/dualstack/internal/rump"
	"github.com/stretchr/testify/require"
)

// rumpSockets makes sockets on the rump stack, as sysSockets makes the
// host's.
type rumpSockets struct{}

type rumpSocket struct {
	fd int
	o  sockOpts
}

func (rumpSockets) socket(o sockOpts) (socket, error) {
	if o.control != nil {
		return nil, errors.New("rump: no Control on rump sockets")
	}
	fd, err := rump.Socket(int(o.family), o.proto == udp)
	if err != nil {
		return nil, err
	}
	if o.family == inet6 {
		err = rump.SetV6Only(fd, o.v6only)
	}
	if err == nil && o.reuseAddr {
		err = rump.SetReuseAddr(fd, true)
	}
	if err != nil {
		rump.Close(fd)
		return nil, err
	}
	return &rumpSocket{fd: fd, o: o}, nil
}

// portRanges reads the rump stack's ephemeral ranges, as the host's layer
// reads NetBSD's (ports_netbsd.go).
func (rumpSockets) portRanges(proto) (lo4, hi4, lo6, hi6 uint32, err error) {
	var v [4]uint32
	for i, mib := range [][]int{rump.MIBAnonPortMin, rump.MIBAnonPortMax, rump.MIB6AnonPortMin, rump.MIB6AnonPortMax} {
		n, err := rump.SysctlValue(mib)
		if err != nil {
			return 0, 0, 0, 0, err
		}
		v[i] = uint32(n)
	}
	return v[0], v[1], v[2], v[3], nil
}

func (s *rumpSocket) bind(a netip.AddrPort) (uint16, error) {
	if err := rump.Bind(s.fd, a); err != nil {
		return 0, err
	}
	if a.Port() != 0 {
		return a.Port(), nil
	}
	got, err := rump.Name(s.fd)
	return got.Port(), err
}

func (s *rumpSocket) listen() error {
	if s.o.proto == udp {
		return nil
	}
	return rump.Listen(s.fd, 64)
}

func (s *rumpSocket) close() error { return rump.Close(s.fd) }

// netbsdSystem is NetBSD's binding algorithms on the rump stack.
func netbsdSystem(guards bool) system {
	facts := factsFor("netbsd")
	facts.guards = facts.guards && guards
	return system{api: rumpSockets{}, facts: facts}
}

// rumpStack starts the rump kernel and narrows both families' ephemeral
// ranges to lo..hi for the test.
func rumpStack(t *testing.T, lo, hi int) {
	t.Helper()
	require.NoError(t, rump.Init())
	for _, mib := range [][]int{rump.MIBAnonPortMax, rump.MIB6AnonPortMax, rump.MIBAnonPortMin, rump.MIB6AnonPortMin} {
		v := hi
		if len(mib) == 4 && (mib[3] == 10 || mib[3] == 28) {
			v = lo
		}
		old, err := rump.Sysctl(mib, v)
		require.NoError(t, err)
		t.Cleanup(func() { rump.Sysctl(mib, old) })
	}
}

// rumpListener is what the binder holds: the sockets that listen (or are
// read), and the bound guards.
type rumpListener struct {
	fds, held []int
	port      uint16
	udp       bool
}

func rumpListen(sys system, mode Mode, pr proto, address string) (*rumpListener, error) {
	lc := ListenConfig{Mode: mode}
	network := "tcp"
	if pr == udp {
		network = "udp"
	}
	p, err := lc.plan(context.Background(), sys, pr, network, address)
	if err != nil {
		return nil, err
	}
	r, err := lc.binder(sys).bind(p)
	if err != nil {
		return nil, err
	}
	l := &rumpListener{port: r.port, udp: pr == udp}
	for i, s := range r.socks {
		if r.eps[i].listens() {
			l.fds = append(l.fds, s.(*rumpSocket).fd)
		} else {
			l.held = append(l.held, s.(*rumpSocket).fd)
		}
	}
	return l, nil
}

func (l *rumpListener) close() {
	for _, fd := range append(l.fds, l.held...) {
		rump.Close(fd)
	}
}

// outcome is where a connection or datagram to the listener's port went.
type outcome int

const (
	ours    outcome = iota // one of the listener's sockets took it, token and all
	other                  // it went somewhere else: another socket took it
	refused                // the connection was refused, or the datagram lost
)

// clientPorts hands out source ports outside every range under test, one
// a connection, so that no 4-tuple repeats.
var clientPorts = 30000

// reach sends a token to host on l's port, over TCP or UDP as l is, and
// says where it went.
func (l *rumpListener) reach(host string) (outcome, error) {
	dst := netip.AddrPortFrom(netip.MustParseAddr(host), l.port)
	fam := 4
	if dst.Addr().Is6() {
		fam = 6
	}
	c, err := rump.Socket(fam, l.udp)
	if err != nil {
		return 0, err
	}
	defer rump.Close(c)
	rump.SetLinger0(c)
	clientPorts++
	if clientPorts > 39999 {
		clientPorts = 30001
	}
	from := netip.AddrPortFrom(dst.Addr(), uint16(clientPorts))
	rump.SetReuseAddr(c, true)
	if err := rump.Bind(c, from); err != nil {
		return 0, fmt.Errorf("client bind %v: %w", from, err)
	}
	token := []byte(rand.Text())
	if l.udp {
		if err := rump.SendTo(c, token, dst); err != nil {
			return refused, nil
		}
	} else if err := rump.ConnectWait(c, dst, 500); err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) {
			return refused, nil
		}
		if errors.Is(err, syscall.ETIMEDOUT) {
			return other, nil // a full queue of a socket that is not ours
		}
		return 0, err
	}
	ready, err := rump.Readable(l.fds, 200)
	if err != nil {
		return 0, err
	}
	for i, fd := range l.fds {
		if !ready[i] {
			continue
		}
		buf := make([]byte, 64)
		if l.udp {
			n, src, err := rump.RecvFrom(fd, buf)
			if err != nil {
				return 0, err
			}
			if UnmapAddrPort(src) != from || string(buf[:n]) != string(token) {
				return other, nil // someone else's datagram: not this one
			}
			return ours, nil
		}
		s, peer, err := rump.Accept(fd)
		if err != nil {
			return 0, err
		}
		defer rump.Close(s)
		rump.SetLinger0(s)
		if UnmapAddrPort(peer) != from {
			return other, nil
		}
		if _, err := rump.Write(c, token); err != nil {
			return 0, err
		}
		n, err := rump.Read(s, buf)
		if err != nil || string(buf[:n]) != string(token) {
			return other, err
		}
		return ours, nil
	}
	return other, nil
}

// rumpHolder is another program's socket on the port range.
type rumpHolder struct {
	fam    int
	addr   string
	v6only bool
	ra, rp bool
	state  string // "listening", "bound", "connected", "time-wait"
}

func (h rumpHolder) String() string {
	return fmt.Sprintf("%s v6only=%v ra=%v rp=%v %s", h.addr, h.v6only, h.ra, h.rp, h.state)
}

var rumpHolderAddrs = []struct {
	fam    int
	addr   string
	v6only bool
}{{4, "0.0.0.0", false}, {4, "127.0.0.1", false}, {6, "::", true}, {6, "::", false}, {6, "::1", true}}

func randomHolder(rng *mrand.Rand, dgram bool) rumpHolder {
	a := rumpHolderAddrs[rng.IntN(len(rumpHolderAddrs))]
	h := rumpHolder{fam: a.fam, addr: a.addr, v6only: a.v6only, ra: rng.IntN(2) == 0, rp: rng.IntN(3) == 0}
	states := []string{"listening", "bound", "connected", "time-wait"}
	if dgram {
		states = []string{"bound", "connected"}
	}
	h.state = states[rng.IntN(len(states))]
	return h
}

// place opens h on port; it returns the descriptors to close, none if the
// kernel refused the bind.
func (h rumpHolder) place(port int, dgram bool, anchor *int) ([]int, error) {
	fd, err := rump.Socket(h.fam, dgram)
	if err != nil {
		return nil, err
	}
	if h.fam == 6 {
		rump.SetV6Only(fd, h.v6only)
	}
	rump.SetReuseAddr(fd, h.ra)
	rump.SetReusePort(fd, h.rp)
	if err := rump.Bind(fd, netip.AddrPortFrom(netip.MustParseAddr(h.addr), uint16(port))); err != nil {
		rump.Close(fd)
		return nil, nil
	}
	fds := []int{fd}
	switch h.state {
	case "listening":
		if !dgram {
			if err := rump.Listen(fd, 8); err != nil {
				return fds, err
			}
		}
	case "connected", "time-wait":
		// Connect to a listener of its own, outside the range.
		host := "127.0.0.1"
		if h.fam == 6 {
			host = "::1"
		}
		*anchor++
		dst := netip.AddrPortFrom(netip.MustParseAddr(host), uint16(*anchor))
		ln, err := rump.Socket(h.fam, dgram)
		if err != nil {
			return fds, err
		}
		fds = append(fds, ln)
		if err := rump.Bind(ln, dst); err != nil {
			return fds, err
		}
		if !dgram {
			rump.Listen(ln, 8)
		}
		if err := rump.Connect(fd, dst); err != nil {
			return fds, nil // a dual-stack socket on an IPv6 peer, say: left bound
		}
		if !dgram {
			s, _, err := rump.Accept(ln)
			if err != nil {
				return fds, err
			}
			if h.state == "time-wait" {
				// The holder closes first and stays in TIME_WAIT.
				rump.Close(fd)
				fds = append(fds[1:], s)
				return fds, nil
			}
			fds = append(fds, s)
		}
	}
	return fds, nil
}

func closeFDs(fds []int) {
	for _, fd := range fds {
		rump.Close(fd)
	}
}

func rumpSeed(t *testing.T) uint64 {
	seed := uint64(os.Getpid())
	if s := os.Getenv("DUALSTACK_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("seed %d (set DUALSTACK_SEED to replay)", seed)
	return seed
}

// TestNetBSDHoldersBefore: other programs' sockets of every kind (AF_INET
// on 0.0.0.0 and 127.0.0.1, AF_INET6 on [::] IPv6-only and dual-stack and
// on [::1]; SO_REUSEADDR, SO_REUSEPORT or neither; listening, bound,
// connected, in TIME_WAIT) hold ports of a ten-port range; then Listen on
// port 0, Separate on the wildcard and on localhost, TCP and UDP, must
// bind a port whose 127.0.0.1 and ::1 traffic reaches it, token and all.
// The control, a dual-stack [::]:0 socket with SO_REUSEADDR as Go's
// net.Listen("tcp", ":0") binds it, must lose IPv4 clients to holders.
func TestNetBSDHoldersBefore(t *testing.T) {
	const lo, hi = 50000, 50009
	rumpStack(t, lo, hi)
	rng := mrand.New(mrand.NewPCG(rumpSeed(t), 15))
	sys := netbsdSystem(true)
	rounds, perCase := 60, 10
	binds, misroutes, full, controls, controlMisroutes := 0, 0, 0, 0, 0
	anchor := 40000
	for round := range rounds {
		for _, dgram := range []bool{false, true} {
			var held []int
			var placed []string
			for range 3 + rng.IntN(10) {
				h := randomHolder(rng, dgram)
				port := lo + rng.IntN(hi-lo+1)
				fds, err := h.place(port, dgram, &anchor)
				held = append(held, fds...)
				require.NoError(t, err, "holder %v", h)
				if len(fds) > 0 {
					placed = append(placed, fmt.Sprintf("%d: %v", port, h))
				}
			}
			pr := tcp
			if dgram {
				pr = udp
			}
			for _, address := range []string{":0", "localhost:0"} {
				for range perCase {
					l, err := rumpListen(sys, Separate, pr, address)
					if err != nil {
						if addrInUse(err) || notAssignable(err) {
							full++
							continue
						}
						t.Fatalf("round %d %s: %v", round, address, err)
					}
					binds++
					for _, host := range []string{"127.0.0.1", "::1"} {
						got, err := l.reach(host)
						require.NoError(t, err)
						if got != ours {
							misroutes++
							if misroutes <= 5 {
								var mine []string
								for _, fd := range append(l.fds, l.held...) {
									n, _ := rump.Name(fd)
									mine = append(mine, n.String())
								}
								t.Errorf("round %d, udp %v, %s on port %d (%v): %s went elsewhere (%d); holders %q", round, dgram, address, l.port, mine, host, got, placed)
							}
						}
					}
					l.close()
				}
			}
			// The control: net.Listen("tcp", ":0") as Go binds it.
			for range perCase {
				fd, err := rump.Socket(6, dgram)
				require.NoError(t, err)
				rump.SetV6Only(fd, false)
				rump.SetReuseAddr(fd, true)
				if err := rump.Bind(fd, netip.MustParseAddrPort("[::]:0")); err != nil {
					rump.Close(fd)
					continue
				}
				if !dgram {
					rump.Listen(fd, 8)
				}
				name, _ := rump.Name(fd)
				c := &rumpListener{fds: []int{fd}, port: name.Port(), udp: dgram}
				controls++
				if got, err := c.reach("127.0.0.1"); err == nil && got != ours {
					controlMisroutes++
				}
				c.close()
			}
			closeFDs(held)
		}
	}
	t.Logf("%d listens, %d found the range full; control %d binds", binds, full, controls)
	fmt.Printf("FIGURE netbsd scenarios: %d binds, %d misroutes, control %d misroutes\n", binds, misroutes, controlMisroutes)
	require.Zero(t, misroutes)
	require.Positive(t, controlMisroutes, "the control must show the bug in this run")
}

// TestNetBSDKernelSearchGivesHeldPorts: the control of osFacts.searchPorts.
// In a range whose ports are all held but the last one the kernel gave,
// NetBSD's own search for 0.0.0.0:0 still succeeds, with the port below
// that one (portalgo_randport's fallback): here one that an AF_INET
// listener without any reuse option holds. The binder's search instead
// fails, saying the range is full.
func TestNetBSDKernelSearchGivesHeldPorts(t *testing.T) {
	const lo, hi = 50100, 50103
	rumpStack(t, lo, hi)
	var held []int
	defer func() { closeFDs(held) }()
	listeners := map[uint16]bool{}
	for p := lo; p < hi; p++ {
		fd, err := rump.Socket(4, false)
		require.NoError(t, err)
		held = append(held, fd)
		require.NoError(t, rump.Bind(fd, netip.AddrPortFrom(netip.IPv4Unspecified(), uint16(p))))
		require.NoError(t, rump.Listen(fd, 8))
		listeners[uint16(p)] = true
	}
	// The kernel gives the one free port, and remembers it.
	fd, err := rump.Socket(4, false)
	require.NoError(t, err)
	held = append(held, fd)
	require.NoError(t, rump.Bind(fd, netip.MustParseAddrPort("0.0.0.0:0")))
	first, err := rump.Name(fd)
	require.NoError(t, err)
	require.Equal(t, uint16(hi), first.Port())

	fd, err = rump.Socket(4, false)
	require.NoError(t, err)
	held = append(held, fd)
	require.NoError(t, rump.Bind(fd, netip.MustParseAddrPort("0.0.0.0:0")), "the full range should fail, and does not")
	got, err := rump.Name(fd)
	require.NoError(t, err)
	t.Logf("with the range full, the kernel's search gave %v", got)
	require.True(t, listeners[got.Port()], "the control: a port an AF_INET listener holds, given to another AF_INET wildcard")

	_, err = rumpListen(netbsdSystem(true), Separate, tcp, ":0")
	require.ErrorIs(t, err, syscall.EADDRINUSE)
	require.Contains(t, err.Error(), "no free port left in the ephemeral range")
}

// laterBinder is a later program's bind on or next to the listener's port.
type laterBinder struct {
	fam    int
	addr   string
	v6only bool
	ra, rp bool
	port0  bool // bind port 0 with the range narrowed to the listener's port
}

func laterBinders() []laterBinder {
	var out []laterBinder
	for _, a := range rumpHolderAddrs {
		for _, o := range [][2]bool{{false, false}, {true, false}, {false, true}, {true, true}} {
			for _, port0 := range []bool{false, true} {
				out = append(out, laterBinder{a.fam, a.addr, a.v6only, o[0], o[1], port0})
			}
		}
	}
	return out
}

// TestNetBSDLaterBinders: after a listener of ours, a later program binds
// each loopback and wildcard address with each reuse option, on our port
// or on port 0 with the range narrowed to our port; whatever binds must
// take none of our traffic over 127.0.0.1 and ::1, TCP and UDP. The
// control, the same listeners without guards, must lose traffic.
func TestNetBSDLaterBinders(t *testing.T) {
	const lo, hi = 50200, 50299
	rumpStack(t, lo, hi)
	cases, took, controlCases, controlTook := 0, 0, 0, 0
	for _, guarded := range []bool{true, false} {
		sys := netbsdSystem(guarded)
		for _, pr := range []proto{tcp, udp} {
			for _, address := range []string{":0", "localhost:0"} {
				for _, lb := range laterBinders() {
					l, err := rumpListen(sys, Separate, pr, address)
					require.NoError(t, err)
					fds, bound := lb.place(t, l.port, pr == udp)
					lost := false
					if bound {
						for _, host := range []string{"127.0.0.1", "::1"} {
							got, err := l.reach(host)
							require.NoError(t, err)
							lost = lost || got != ours
						}
					}
					closeFDs(fds)
					l.close()
					if guarded {
						cases++
						if lost {
							took++
							t.Errorf("%v %s: a later %+v took our traffic", pr, address, lb)
						}
					} else {
						controlCases++
						if lost {
							controlTook++
							t.Logf("control: %s %s: a later %+v took the traffic", pr.network(inet4)[:3], address, lb)
						}
					}
				}
			}
		}
	}
	t.Logf("control, without guards: %d of %d later binds took traffic", controlTook, controlCases)
	fmt.Printf("FIGURE netbsd later binders: %d cases, %d took our traffic, control %d\n", cases, took, controlTook)
	require.Zero(t, took)
	require.Positive(t, controlTook, "the control must show later binders taking traffic")
}

// place binds the later binder next to a listener on port, and listens;
// it reports whether the bind succeeded.
func (lb laterBinder) place(t *testing.T, port uint16, dgram bool) ([]int, bool) {
	t.Helper()
	fd, err := rump.Socket(lb.fam, dgram)
	require.NoError(t, err)
	if lb.fam == 6 {
		rump.SetV6Only(fd, lb.v6only)
	}
	rump.SetReuseAddr(fd, lb.ra)
	rump.SetReusePort(fd, lb.rp)
	to := netip.AddrPortFrom(netip.MustParseAddr(lb.addr), port)
	var fds []int
	if lb.port0 {
		// NetBSD refuses a range of one port: the range is our port and
		// the next, which a socket on the binder's address holds.
		to = netip.AddrPortFrom(to.Addr(), 0)
		plug, err := rump.Socket(lb.fam, dgram)
		require.NoError(t, err)
		fds = append(fds, plug)
		if lb.fam == 6 {
			rump.SetV6Only(plug, lb.v6only)
		}
		rump.Bind(plug, netip.AddrPortFrom(to.Addr(), port+1))
		for _, mib := range [][]int{rump.MIBAnonPortMax, rump.MIB6AnonPortMax, rump.MIBAnonPortMin, rump.MIB6AnonPortMin} {
			v := int(port) + 1
			if mib[3] == 10 || mib[3] == 28 {
				v = int(port)
			}
			old, err := rump.Sysctl(mib, v)
			require.NoError(t, err)
			defer rump.Sysctl(mib, old)
		}
	}
	fds = append(fds, fd)
	if err := rump.Bind(fd, to); err != nil {
		return fds, false
	}
	if got, _ := rump.Name(fd); got.Port() != port {
		return fds, false // the search went elsewhere: not next to us
	}
	if !dgram {
		require.NoError(t, rump.Listen(fd, 8))
	}
	return fds, true
}
