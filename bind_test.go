//go:build unix

package dualstack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// traceSockets is a socket layer that records every call and makes each
// bind succeed, port 0 getting port 40000, unless fail says otherwise. It
// stands for a kernel that never refuses, to show what an algorithm does.
type traceSockets struct {
	mu    sync.Mutex
	log   []string
	open  int
	fail  func(op string, o sockOpts, a netip.AddrPort) error
	inner socketAPI // if set, calls go on to it
}

type traceSocket struct {
	t     *traceSockets
	o     sockOpts
	id    int
	addr  netip.AddrPort // as bound
	inner socket
}

func (t *traceSockets) record(format string, args ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.log = append(t.log, fmt.Sprintf(format, args...))
}

func (t *traceSockets) check(op string, o sockOpts, a netip.AddrPort) error {
	if t.fail == nil {
		return nil
	}
	return t.fail(op, o, a)
}

func (t *traceSockets) socket(o sockOpts) (socket, error) {
	if err := t.check("socket", o, netip.AddrPort{}); err != nil {
		t.record("socket %v: %v", describe(o), err)
		return nil, os.NewSyscallError("socket", err)
	}
	s := &traceSocket{t: t, o: o}
	if t.inner != nil {
		in, err := t.inner.socket(o)
		if err != nil {
			return nil, err
		}
		s.inner = in
	}
	t.mu.Lock()
	t.open++
	s.id = t.open
	t.mu.Unlock()
	t.record("socket %v", describe(o))
	return s, nil
}

func describe(o sockOpts) string {
	d := o.family.String()
	if o.family == inet6 {
		d += fmt.Sprintf(" v6only=%d", boolint(o.v6only))
	}
	if o.reuseAddr {
		d += " SO_REUSEADDR"
	}
	if o.exclusive {
		d += " SO_EXCLUSIVEADDRUSE"
	}
	if o.control != nil {
		d += " +Control"
	}
	return d
}

func (s *traceSocket) bind(a netip.AddrPort) (uint16, error) {
	if err := s.t.check("bind", s.o, a); err != nil {
		s.t.record("bind %v: %v", a, err)
		return 0, os.NewSyscallError("bind", err)
	}
	port := a.Port()
	if s.inner != nil {
		p, err := s.inner.bind(a)
		if err != nil {
			s.t.record("bind %v: %v", a, err)
			return 0, err
		}
		port = p
	} else if port == 0 {
		port = 40000
	}
	s.addr = netip.AddrPortFrom(a.Addr(), port)
	s.t.record("bind %v", a)
	return port, nil
}

func (s *traceSocket) listen() error {
	if err := s.t.check("listen", s.o, netip.AddrPort{}); err != nil {
		s.t.record("listen: %v", err)
		return os.NewSyscallError("listen", err)
	}
	s.t.record("listen %v", s.addr)
	if s.inner != nil {
		return s.inner.listen()
	}
	return nil
}

func (s *traceSocket) close() error {
	s.t.mu.Lock()
	s.t.open--
	s.t.mu.Unlock()
	if s.addr.IsValid() {
		s.t.record("close %v", s.addr)
	} else {
		s.t.record("close unbound %s", s.o.family)
	}
	if s.inner != nil {
		return s.inner.close()
	}
	return nil
}

func (s *traceSocket) tcpListener() (*net.TCPListener, error) {
	s.t.mu.Lock()
	s.t.open--
	s.t.mu.Unlock()
	return s.inner.(tcpSocket).tcpListener()
}

// TestAlgorithmTraces pins down what each OS's algorithm does, call by call.
func TestAlgorithmTraces(t *testing.T) {
	t.Parallel()
	tests := []struct {
		goos    string
		mode    Mode
		address string
		want    []string
	}{
		// Linux: a dual-stack probe picks the port for both halves, is
		// closed, then each half is bound; listen only once all are bound.
		// No guards: Linux refuses later binds next to a listener.
		{"linux", Separate, ":0", []string{
			"socket IPv6 v6only=0", "bind [::]:0", "close [::]:40000",
			"socket IPv4", "bind 0.0.0.0:40000",
			"socket IPv6 v6only=1", "bind [::]:40000",
			"listen 0.0.0.0:40000", "listen [::]:40000",
		}},
		// Explicit ports keep SO_REUSEADDR as Go sets it, and need no probe.
		{"linux", Separate, ":8080", []string{
			"socket IPv4 SO_REUSEADDR", "bind 0.0.0.0:8080",
			"socket IPv6 v6only=1 SO_REUSEADDR", "bind [::]:8080",
			"listen 0.0.0.0:8080", "listen [::]:8080",
		}},
		// Linux checks both families on a dual-stack bind: one bind.
		{"linux", Single, ":0", []string{"socket IPv6 v6only=0", "bind [::]:0", "listen [::]:40000"}},
		// Linux, specific addresses: no probe, which would be wider than
		// them; the IPv4 socket picks the port.
		{"linux", Separate, "localhost:0", []string{
			"socket IPv4", "bind 127.0.0.1:0",
			"socket IPv6 v6only=1", "bind [::1]:40000",
			"listen 127.0.0.1:40000", "listen [::1]:40000",
		}},
		// macOS: the AF_INET socket picks the port, without SO_REUSEADDR,
		// because macOS's IPv6 port search ignores AF_INET sockets. Then
		// the loopback guards, with SO_REUSEADDR (without it the kernel
		// refuses them next to our own wildcards), listening first.
		{"darwin", Separate, ":0", []string{
			"socket IPv4", "bind 0.0.0.0:0",
			"socket IPv6 v6only=1", "bind [::]:40000",
			"socket IPv4 SO_REUSEADDR", "bind 127.0.0.1:40000",
			"socket IPv6 v6only=1 SO_REUSEADDR", "bind [::1]:40000",
			"listen 127.0.0.1:40000", "listen [::1]:40000",
			"listen 0.0.0.0:40000", "listen [::]:40000",
		}},
		// macOS Single: an AF_INET probe holds the IPv4 side while the
		// dual-stack socket and the guards bind.
		{"darwin", Single, ":0", []string{
			"socket IPv4", "bind 0.0.0.0:0",
			"socket IPv6 v6only=0", "bind [::]:40000",
			"socket IPv4 SO_REUSEADDR", "bind 127.0.0.1:40000",
			"socket IPv6 v6only=1 SO_REUSEADDR", "bind [::1]:40000",
			"close 0.0.0.0:40000",
			"listen 127.0.0.1:40000", "listen [::1]:40000", "listen [::]:40000",
		}},
		{"darwin", Single, ":8080", []string{
			"socket IPv4 SO_REUSEADDR", "bind 0.0.0.0:8080",
			"socket IPv6 v6only=0 SO_REUSEADDR", "bind [::]:8080",
			"socket IPv4 SO_REUSEADDR", "bind 127.0.0.1:8080",
			"socket IPv6 v6only=1 SO_REUSEADDR", "bind [::1]:8080",
			"close 0.0.0.0:8080",
			"listen 127.0.0.1:8080", "listen [::1]:8080", "listen [::]:8080",
		}},
		// FreeBSD localhost: the wildcards are held by bound guards, which
		// never listen.
		{"freebsd", Separate, "localhost:0", []string{
			"socket IPv4", "bind 127.0.0.1:0",
			"socket IPv6 v6only=1", "bind [::1]:40000",
			"socket IPv4 SO_REUSEADDR", "bind 0.0.0.0:40000",
			"socket IPv6 v6only=1 SO_REUSEADDR", "bind [::]:40000",
			"listen 127.0.0.1:40000", "listen [::1]:40000",
		}},
		// One family: one guard.
		{"freebsd", Separate, "[::1]:0", []string{
			"socket IPv6 v6only=1", "bind [::1]:0",
			"socket IPv6 v6only=1 SO_REUSEADDR", "bind [::]:40000",
			"listen [::1]:40000",
		}},
		// DragonFly: the AF_INET socket first; no guards (unverified).
		{"dragonfly", Separate, ":0", []string{
			"socket IPv4", "bind 0.0.0.0:0",
			"socket IPv6 v6only=1", "bind [::]:40000",
			"listen 0.0.0.0:40000", "listen [::]:40000",
		}},
		// Windows: SO_EXCLUSIVEADDRUSE on both, IPv4 first, never
		// SO_REUSEADDR.
		{"windows", Separate, ":8080", []string{
			"socket IPv4 SO_EXCLUSIVEADDRUSE", "bind 0.0.0.0:8080",
			"socket IPv6 v6only=1 SO_EXCLUSIVEADDRUSE", "bind [::]:8080",
			"listen 0.0.0.0:8080", "listen [::]:8080",
		}},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s/%v/%s", tc.goos, tc.mode, tc.address), func(t *testing.T) {
			t.Parallel()
			ts := &traceSockets{}
			lc := ListenConfig{Mode: tc.mode}
			p, err := lc.plan(context.Background(), hostSystem, tcp, "tcp", tc.address)
			require.NoError(t, err)
			b := lc.binder(system{api: ts, facts: factsFor(tc.goos)})
			r, err := b.bind(p)
			require.NoError(t, err)
			assert.Equal(t, tc.want, ts.log)
			assert.Equal(t, len(r.socks), ts.open, "only the listener's sockets stay open")
		})
	}
}

// TestUDPNeverReuses: the UDP sockets asked for get neither SO_REUSEADDR
// nor SO_REUSEPORT, explicit port or not; guards get SO_REUSEADDR alone,
// which on the kernels that need them lets no one share their address.
func TestUDPNeverReuses(t *testing.T) {
	t.Parallel()
	for _, goos := range []string{"linux", "darwin", "freebsd"} {
		for _, address := range []string{":0", ":8080", "localhost:0"} {
			ts := &traceSockets{}
			lc := ListenConfig{Mode: Separate}
			p, err := lc.plan(context.Background(), hostSystem, udp, "udp", address)
			require.NoError(t, err)
			r, err := lc.binder(system{api: ts, facts: factsFor(goos)}).bind(p)
			require.NoError(t, err)
			for i, s := range r.socks {
				o := s.(*traceSocket).o
				assert.Equal(t, r.eps[i].guard != asked, o.reuseAddr, "%s %s: %v", goos, address, r.eps[i])
			}
			for _, line := range ts.log {
				assert.NotContains(t, line, "SO_REUSEPORT", "%s %s: %v", goos, address, ts.log)
			}
		}
	}
}

// TestSingleUnsupported: where Single cannot be done safely, it is an
// error that names the OS, and nothing is opened.
func TestSingleUnsupported(t *testing.T) {
	t.Parallel()
	for _, goos := range []string{"openbsd", "dragonfly", "netbsd", "illumos", "windows"} {
		ts := &traceSockets{}
		lc := ListenConfig{Mode: Single}
		p, err := lc.plan(context.Background(), hostSystem, tcp, "tcp", ":0")
		require.NoError(t, err)
		_, err = lc.binder(system{api: ts, facts: factsFor(goos)}).bind(p)
		require.ErrorIs(t, err, errors.ErrUnsupported, goos)
		assert.Contains(t, err.Error(), "not supported on "+goos)
		assert.Empty(t, ts.log, goos)
	}
}

// TestAttemptsRunOut: when the other half of every port picked is taken,
// Listen gives up after Attempts tries, says so, and holds nothing.
func TestAttemptsRunOut(t *testing.T) {
	t.Parallel()
	for _, goos := range []string{"linux", "darwin", "windows"} {
		t.Run(goos, func(t *testing.T) {
			t.Parallel()
			binds := 0
			ts := &traceSockets{fail: func(op string, o sockOpts, a netip.AddrPort) error {
				if op == "bind" && o.family == inet6 && o.v6only {
					binds++
					return syscall.EADDRINUSE
				}
				return nil
			}}
			lc := ListenConfig{Mode: Separate, Attempts: 5}
			p, err := lc.plan(context.Background(), hostSystem, tcp, "tcp", ":0")
			require.NoError(t, err)
			_, err = lc.binder(system{api: ts, facts: factsFor(goos)}).bind(p)
			require.ErrorIs(t, err, syscall.EADDRINUSE)
			err = listenError(tcp, "tcp", err)
			var oe *net.OpError
			require.ErrorAs(t, err, &oe)
			assert.Equal(t, "[::]:40000", oe.Addr.String())
			assert.Equal(t, "listen tcp [::]:40000: IPv6 socket: bind: address already in use (gave up after 5 attempts)", err.Error())
			assert.Equal(t, 5, binds)
			assert.Zero(t, ts.open, "sockets left open")
		})
	}
}

// TestExplicitPortNotRetried: a taken explicit port fails at once.
func TestExplicitPortNotRetried(t *testing.T) {
	t.Parallel()
	binds := 0
	ts := &traceSockets{fail: func(op string, o sockOpts, a netip.AddrPort) error {
		if op == "bind" {
			binds++
			if o.family == inet6 {
				return syscall.EADDRINUSE
			}
		}
		return nil
	}}
	lc := ListenConfig{Mode: Separate}
	p, err := lc.plan(context.Background(), hostSystem, tcp, "tcp", ":8080")
	require.NoError(t, err)
	_, err = lc.binder(system{api: ts, facts: factsFor("linux")}).bind(p)
	require.ErrorIs(t, err, syscall.EADDRINUSE)
	assert.NotContains(t, err.Error(), "attempts")
	assert.Equal(t, 2, binds)
	assert.Zero(t, ts.open)
}

// TestListenFailureClosesAll: a failing listen(2) on the second socket
// closes both.
func TestListenFailureClosesAll(t *testing.T) {
	t.Parallel()
	ts := &traceSockets{fail: func(op string, o sockOpts, a netip.AddrPort) error {
		if op == "listen" && o.family == inet6 {
			return syscall.ENOBUFS
		}
		return nil
	}}
	lc := ListenConfig{Mode: Separate}
	p, err := lc.plan(context.Background(), hostSystem, tcp, "tcp", ":0")
	require.NoError(t, err)
	_, err = lc.binder(system{api: ts, facts: factsFor("linux")}).bind(p)
	require.ErrorIs(t, err, syscall.ENOBUFS)
	assert.Contains(t, err.Error(), "IPv6 socket: listen:")
	assert.Zero(t, ts.open)
}

// noIPv6Sockets is the host's socket layer on a host whose kernel has no
// IPv6: AF_INET6 sockets cannot be created.
func noIPv6Sockets() *traceSockets {
	return &traceSockets{inner: hostSockets, fail: func(op string, o sockOpts, _ netip.AddrPort) error {
		if op == "socket" && o.family == inet6 {
			return syscall.EAFNOSUPPORT
		}
		return nil
	}}
}

// TestNoIPv6Kernel: where AF_INET6 sockets cannot be created, Auto listens
// on IPv4 alone and says so in Addrs; explicit modes fail and say why.
func TestNoIPv6Kernel(t *testing.T) {
	t.Parallel()
	for _, address := range []string{":0", "localhost:0"} {
		t.Run("Auto "+address, func(t *testing.T) {
			t.Parallel()
			ts := noIPv6Sockets()
			sys := hostSystem
			sys.api = ts
			ln, err := (&ListenConfig{}).listen(context.Background(), sys, "tcp", address)
			require.NoError(t, err)
			defer ln.Close()
			require.Len(t, ln.Addrs(), 1)
			assert.True(t, ln.Addr().(*net.TCPAddr).AddrPort().Addr().Is4(), "IPv4 alone: %v", ln.Addrs())
			assert.Equal(t, Separate, ln.Mode())
			c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", fmt.Sprint(ln.Addr().(*net.TCPAddr).Port)))
			require.NoError(t, err)
			c.Close()
			got, err := ln.Accept()
			require.NoError(t, err)
			got.Close()
		})
	}
	for _, mode := range []Mode{Separate, Single} {
		t.Run(mode.String(), func(t *testing.T) {
			t.Parallel()
			ts := noIPv6Sockets()
			sys := hostSystem
			sys.api = ts
			_, err := (&ListenConfig{Mode: mode}).listen(context.Background(), sys, "tcp", ":0")
			require.ErrorIs(t, err, syscall.EAFNOSUPPORT)
			var oe *net.OpError
			require.ErrorAs(t, err, &oe)
			if mode == Separate {
				assert.Contains(t, err.Error(), "Auto mode would listen on IPv4 alone")
			}
			assert.Zero(t, ts.open, "sockets left open")
		})
	}
}

// TestForeignAlgorithmsOnHost runs the Separate algorithm of every OS
// against the host's kernel: whatever picks the port, the halves end on one
// port and both families reach the listener. Guards are bound only where
// the host's own algorithm binds them: a kernel that needs none (Linux)
// refuses them next to our own wildcard.
func TestForeignAlgorithmsOnHost(t *testing.T) {
	t.Parallel()
	for _, goos := range []string{"linux", "darwin", "freebsd", "netbsd", "openbsd", "dragonfly", "illumos", "windows", "plan9"} {
		t.Run(goos, func(t *testing.T) {
			t.Parallel()
			sys := hostSystem
			sys.facts = factsFor(goos)
			sys.facts.guards = sys.facts.guards && hostFacts.guards
			for _, address := range []string{":0", "localhost:0"} {
				ln, err := (&ListenConfig{Mode: Separate}).listen(context.Background(), sys, "tcp", address)
				require.NoError(t, err)
				port := ln.Addr().(*net.TCPAddr).Port
				for _, a := range ln.Addrs() {
					assert.Equal(t, port, a.(*net.TCPAddr).Port)
				}
				for _, host := range []string{"127.0.0.1", "::1"} {
					c, err := net.Dial("tcp", net.JoinHostPort(host, fmt.Sprint(port)))
					require.NoError(t, err)
					got, err := ln.Accept()
					require.NoError(t, err)
					assert.Equal(t, c.LocalAddr().String(), got.RemoteAddr().String(), "accepted the connection dialed")
					got.Close()
					c.Close()
				}
				ln.Close()
			}
		})
	}
}

// TestBindErrorText: the message names the socket and the attempts.
func TestBindErrorText(t *testing.T) {
	t.Parallel()
	e := &bindError{role: "IPv4 port probe", err: os.NewSyscallError("bind", syscall.EADDRINUSE), attempts: 3}
	assert.Equal(t, "IPv4 port probe: bind: address already in use (gave up after 3 attempts)", e.Error())
	assert.True(t, strings.HasPrefix((&bindError{role: "IPv6 socket", err: syscall.EADDRNOTAVAIL, hint: "h"}).Error(), "IPv6 socket: "))
}

// TestFailedAttemptsHoldTheirPort: on the kernels where the IPv4 socket
// picks the port, the socket of each failed attempt stays bound until the
// Listen ends, so that the kernel's search cannot offer that port again;
// then it is closed, and only the listener's sockets remain.
func TestFailedAttemptsHoldTheirPort(t *testing.T) {
	t.Parallel()
	fails := 3
	ts := &traceSockets{fail: func(op string, o sockOpts, a netip.AddrPort) error {
		if op == "bind" && o.family == inet6 && a.Addr().IsUnspecified() && fails > 0 {
			fails--
			return syscall.EADDRINUSE
		}
		return nil
	}}
	lc := ListenConfig{Mode: Separate}
	p, err := lc.plan(context.Background(), hostSystem, tcp, "tcp", ":0")
	require.NoError(t, err)
	facts := factsFor("freebsd")
	facts.guards = false // not what this test is about
	r, err := lc.binder(system{api: ts, facts: facts}).bind(p)
	require.NoError(t, err)
	assert.Equal(t, []string{
		"socket IPv4", "bind 0.0.0.0:0", "socket IPv6 v6only=1", "bind [::]:40000: address already in use", "close unbound IPv6",
		"socket IPv4", "bind 0.0.0.0:0", "socket IPv6 v6only=1", "bind [::]:40000: address already in use", "close unbound IPv6",
		"socket IPv4", "bind 0.0.0.0:0", "socket IPv6 v6only=1", "bind [::]:40000: address already in use", "close unbound IPv6",
		"socket IPv4", "bind 0.0.0.0:0", "socket IPv6 v6only=1", "bind [::]:40000",
		"listen 0.0.0.0:40000", "listen [::]:40000",
		// The three held pickers, released once the listener holds its own.
		"close 0.0.0.0:40000", "close 0.0.0.0:40000", "close 0.0.0.0:40000",
	}, ts.log)
	assert.Equal(t, len(r.socks), ts.open)
}

// TestRangeExhaustedSaysSo: where the kernel answers an ephemeral bind of
// a wildcard with EADDRNOTAVAIL, no port is left: the error says so, keeps
// the kernel's errno, and nothing stays open.
func TestRangeExhaustedSaysSo(t *testing.T) {
	t.Parallel()
	attempt := 0
	ts := &traceSockets{fail: func(op string, o sockOpts, a netip.AddrPort) error {
		if op != "bind" {
			return nil
		}
		if o.family == inet6 {
			attempt++
			return syscall.EADDRINUSE
		}
		if attempt == 2 {
			return syscall.EADDRNOTAVAIL
		}
		return nil
	}}
	lc := ListenConfig{Mode: Separate}
	p, err := lc.plan(context.Background(), hostSystem, tcp, "tcp", ":0")
	require.NoError(t, err)
	_, err = lc.binder(system{api: ts, facts: factsFor("freebsd")}).bind(p)
	require.ErrorIs(t, err, syscall.EADDRNOTAVAIL)
	assert.True(t, strings.HasPrefix(err.Error(), "IPv4 socket: bind: "), err.Error())
	assert.True(t, strings.HasSuffix(err.Error(), " (no free port left in the ephemeral range; gave up after 3 attempts)"), err.Error())
	assert.Zero(t, ts.open, "sockets left open")
}

// TestGuardTakenFailsListen: a guard's address held by another socket on
// an explicit port fails the Listen, naming the guard, and nothing stays
// open; a guard whose address no interface has is left out.
func TestGuardTakenFailsListen(t *testing.T) {
	t.Parallel()
	t.Run("taken", func(t *testing.T) {
		t.Parallel()
		ts := &traceSockets{fail: func(op string, o sockOpts, a netip.AddrPort) error {
			if op == "bind" && a.Addr() == netip.IPv6Loopback() {
				return syscall.EADDRINUSE
			}
			return nil
		}}
		lc := ListenConfig{}
		p, err := lc.plan(context.Background(), hostSystem, tcp, "tcp", ":8080")
		require.NoError(t, err)
		_, err = lc.binder(system{api: ts, facts: factsFor("freebsd")}).bind(p)
		require.ErrorIs(t, err, syscall.EADDRINUSE)
		assert.Equal(t, "IPv6 loopback guard: bind: address already in use", err.Error())
		assert.Zero(t, ts.open, "sockets left open")
	})
	t.Run("not assignable", func(t *testing.T) {
		t.Parallel()
		ts := &traceSockets{fail: func(op string, o sockOpts, a netip.AddrPort) error {
			if op == "bind" && a.Addr() == netip.IPv6Loopback() {
				return syscall.EADDRNOTAVAIL
			}
			return nil
		}}
		lc := ListenConfig{}
		p, err := lc.plan(context.Background(), hostSystem, tcp, "tcp", ":8080")
		require.NoError(t, err)
		r, err := lc.binder(system{api: ts, facts: factsFor("freebsd")}).bind(p)
		require.NoError(t, err)
		var addrs []string
		for _, ep := range r.eps {
			addrs = append(addrs, ep.addr.String())
		}
		assert.Equal(t, []string{"0.0.0.0", "::", "127.0.0.1"}, addrs)
		assert.Equal(t, 3, ts.open)
	})
}
