//go:build linux

package model_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"strconv"
	"testing"

	"github.com/dualstack-go/dualstack/internal/model"
	"github.com/dualstack-go/dualstack/internal/netns"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestLinuxModelAgreesWithKernel runs randomized scenarios, each a fresh
// sequence of socket, bind, listen and close calls on ports of a narrow
// range, on the real kernel (in a private namespace) and on the model at
// once, and compares every result: explicit binds and listens must agree,
// an ephemeral port the kernel picks must be one the model allows (and
// the kernel may fail only where the model has none), and a connection to
// 127.0.0.1 or ::1 must reach a listener the model says it may.
func TestLinuxModelAgreesWithKernel(t *testing.T) {
	const lo, hi = 41000, 41007
	scenarios := 1000
	if testing.Short() {
		scenarios = 100
	}
	netns.Enter(t, netns.PortRange(lo, hi))
	seed := uint64(os.Getpid())
	if s := os.Getenv("DUALSTACK_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	rng := rand.New(rand.NewPCG(seed, 7))
	t.Logf("seed %d (set DUALSTACK_SEED to replay)", seed)

	var st stats
	for i := range scenarios {
		if err := runScenario(rng, lo, hi, &st); err != nil {
			t.Fatalf("scenario %d: %v", i, err)
		}
	}
	t.Logf("%d scenarios: %d explicit binds, %d ephemeral binds, %d listens, %d closes, %d deliveries compared; 0 disagreements",
		scenarios, st.explicit, st.ephemeral, st.listens, st.closes, st.deliveries)
	require.GreaterOrEqual(t, scenarios, 100)
}

type stats struct{ explicit, ephemeral, listens, closes, deliveries int }

type pair struct {
	fd int
	m  *model.Socket
}

var (
	addrs4 = []netip.Addr{netip.MustParseAddr("0.0.0.0"), netip.MustParseAddr("127.0.0.1")}
	addrs6 = []netip.Addr{netip.MustParseAddr("::"), netip.MustParseAddr("::1")}
)

func runScenario(rng *rand.Rand, lo, hi uint16, st *stats) (err error) {
	k := model.New(model.Linux, lo, hi, rng)
	var socks []pair
	defer func() {
		for _, p := range socks {
			unix.Close(p.fd)
		}
	}()
	var trace []string
	defer func() {
		if err != nil {
			err = fmt.Errorf("%w\ntrace:\n%v", err, trace)
		}
	}()
	ops := 2 + rng.IntN(8)
	for range ops {
		if i := rng.IntN(len(socks) + 1); i < len(socks) && !socks[i].m.Listening && rng.IntN(2) == 0 {
			// Listen on a socket bound earlier: Linux checks the port
			// again, against sockets bound since.
			st.listens++
			kerr := unix.Listen(socks[i].fd, 16)
			merr := k.Listen(socks[i].m)
			trace = append(trace, fmt.Sprintf("late listen %v: %v", socks[i].m, kerr))
			if !sameErr(kerr, merr) {
				return fmt.Errorf("late listen %v: kernel %v, model %v", socks[i].m, kerr, merr)
			}
			continue
		}
		if len(socks) > 0 && rng.IntN(5) == 0 {
			i := rng.IntN(len(socks))
			unix.Close(socks[i].fd)
			k.Close(socks[i].m)
			trace = append(trace, "close "+socks[i].m.String())
			socks = append(socks[:i], socks[i+1:]...)
			st.closes++
			continue
		}
		fam := model.Family(4)
		addr := addrs4[rng.IntN(2)]
		if rng.IntN(2) == 0 {
			fam, addr = 6, addrs6[rng.IntN(2)]
		}
		o := model.Options{
			V6Only:    fam == 6 && rng.IntN(2) == 0,
			ReuseAddr: rng.IntN(3) == 0,
			ReusePort: rng.IntN(4) == 0,
		}
		port := uint16(0)
		if rng.IntN(3) != 0 {
			port = lo + uint16(rng.IntN(int(hi-lo)+1))
		}
		fd, err := openReal(fam, o)
		if err != nil {
			return err
		}
		m := k.Open(fam, o, "s")
		trace = append(trace, fmt.Sprintf("bind %v %+v", netip.AddrPortFrom(addr, port), o))

		got, kerr := bindReal(fd, netip.AddrPortFrom(addr, port))
		if port == 0 {
			st.ephemeral++
			allowed := k.EphemeralPorts(m, addr)
			switch {
			case kerr != nil && len(allowed) > 0:
				unix.Close(fd)
				return fmt.Errorf("ephemeral bind of %v %+v: kernel %v, model allows ports %v", addr, o, kerr, allowed)
			case kerr != nil:
				unix.Close(fd)
				continue
			case !contains(allowed, got):
				unix.Close(fd)
				return fmt.Errorf("ephemeral bind of %v %+v: kernel took port %d, model allows %v", addr, o, got, allowed)
			}
			k.Place(m, addr, got)
		} else {
			st.explicit++
			_, merr := k.Bind(m, netip.AddrPortFrom(addr, port))
			if !sameErr(kerr, merr) {
				unix.Close(fd)
				return fmt.Errorf("bind %v %+v: kernel %v, model %v", netip.AddrPortFrom(addr, port), o, kerr, merr)
			}
			if kerr != nil {
				unix.Close(fd)
				continue
			}
		}
		socks = append(socks, pair{fd, m})
		if rng.IntN(4) != 0 {
			st.listens++
			kerr := unix.Listen(fd, 16)
			merr := k.Listen(m)
			trace = append(trace, fmt.Sprintf("listen %v: %v", m, kerr))
			if !sameErr(kerr, merr) {
				return fmt.Errorf("listen %v: kernel %v, model %v", m, kerr, merr)
			}
		}
	}
	for p := lo; p <= hi; p++ {
		for _, dst := range []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1")} {
			st.deliveries++
			if err := compareDelivery(k, socks, netip.AddrPortFrom(dst, p)); err != nil {
				return err
			}
		}
	}
	return nil
}

func openReal(fam model.Family, o model.Options) (int, error) {
	af := unix.AF_INET
	if fam == 6 {
		af = unix.AF_INET6
	}
	fd, err := unix.Socket(af, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	set := func(level, opt int, on bool) {
		if err == nil {
			v := 0
			if on {
				v = 1
			}
			err = unix.SetsockoptInt(fd, level, opt, v)
		}
	}
	if fam == 6 {
		set(unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, o.V6Only)
	}
	set(unix.SOL_SOCKET, unix.SO_REUSEADDR, o.ReuseAddr)
	set(unix.SOL_SOCKET, unix.SO_REUSEPORT, o.ReusePort)
	if err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

func bindReal(fd int, a netip.AddrPort) (uint16, error) {
	var sa unix.Sockaddr
	if a.Addr().Is4() {
		sa = &unix.SockaddrInet4{Port: int(a.Port()), Addr: a.Addr().As4()}
	} else {
		sa = &unix.SockaddrInet6{Port: int(a.Port()), Addr: a.Addr().As16()}
	}
	if err := unix.Bind(fd, sa); err != nil {
		return 0, err
	}
	got, err := unix.Getsockname(fd)
	if err != nil {
		return 0, err
	}
	switch got := got.(type) {
	case *unix.SockaddrInet4:
		return uint16(got.Port), nil
	case *unix.SockaddrInet6:
		return uint16(got.Port), nil
	}
	return 0, errors.New("odd sockaddr")
}

// compareDelivery connects to dst and finds the listener that got the
// connection, which must be one the model delivers to.
func compareDelivery(k *model.Kernel, socks []pair, dst netip.AddrPort) error {
	want := k.Deliver(dst)
	var (
		fam      int
		sa, from unix.Sockaddr
	)
	if dst.Addr().Is4() {
		fam = unix.AF_INET
		sa = &unix.SockaddrInet4{Port: int(dst.Port()), Addr: dst.Addr().As4()}
		from = &unix.SockaddrInet4{Port: 45000, Addr: dst.Addr().As4()}
	} else {
		fam = unix.AF_INET6
		sa = &unix.SockaddrInet6{Port: int(dst.Port()), Addr: dst.Addr().As16()}
		from = &unix.SockaddrInet6{Port: 45000, Addr: dst.Addr().As16()}
	}
	c, err := unix.Socket(fam, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	// A fixed client port outside the range, reset on close: no TIME_WAIT
	// and no ephemeral port taken from the range under test.
	unix.SetsockoptInt(c, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	unix.SetsockoptLinger(c, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	defer unix.Close(c)
	if err := unix.Bind(c, from); err != nil {
		return fmt.Errorf("client bind: %w", err)
	}
	cerr := unix.Connect(c, sa)
	if cerr != nil {
		if len(want) > 0 {
			return fmt.Errorf("connect %v: %v, model delivers to %v", dst, cerr, want)
		}
		return nil
	}
	if len(want) == 0 {
		return fmt.Errorf("connect %v succeeded, model has no listener", dst)
	}
	var got *model.Socket
	for _, p := range socks {
		if !p.m.Listening {
			continue
		}
		fds := []unix.PollFd{{Fd: int32(p.fd), Events: unix.POLLIN}}
		if n, _ := unix.Poll(fds, 0); n == 1 {
			if nfd, _, err := unix.Accept(p.fd); err == nil {
				unix.Close(nfd)
				got = p.m
				break
			}
		}
	}
	if got == nil {
		return fmt.Errorf("connect %v: no listener has the connection", dst)
	}
	for _, w := range want {
		if w == got {
			return nil
		}
	}
	return fmt.Errorf("connect %v reached %v, model delivers to %v", dst, got, want)
}

func contains(ports []uint16, p uint16) bool {
	for _, q := range ports {
		if q == p {
			return true
		}
	}
	return false
}

func sameErr(a, b error) bool {
	if a == nil || b == nil {
		return a == b
	}
	var ea, eb unix.Errno
	return errors.As(a, &ea) && errors.As(b, &eb) && ea == eb
}
