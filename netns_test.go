//go:build linux

package dualstack_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dualstack-go/dualstack"
	"github.com/dualstack-go/dualstack/internal/netns"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// These tests run in private network namespaces (see internal/netns):
// everything that opens a socket runs on the test's own goroutine.

// TestNamespaceBindV6Only: with net.ipv6.bindv6only=1 an AF_INET6 socket is
// IPv6-only unless told otherwise; every mode still serves both families.
func TestNamespaceBindV6Only(t *testing.T) {
	netns.Enter(t, netns.BindV6Only...)

	// The setting is in force: a fresh AF_INET6 socket is IPv6-only.
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_STREAM, 0)
	require.NoError(t, err)
	v6only, err := unix.GetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY)
	unix.Close(fd)
	require.NoError(t, err)
	require.Equal(t, 1, v6only, "bindv6only=1 makes IPv6-only the default")

	for _, mode := range modes {
		for _, address := range []string{":0", "[::]:0", "localhost:0"} {
			if mode == dualstack.Single && address == "localhost:0" {
				continue
			}
			ln, err := (&dualstack.ListenConfig{Mode: mode}).Listen(context.Background(), "tcp", address)
			require.NoError(t, err, "%v %s", mode, address)
			ts := serveTokens(t, ln)
			assert.True(t, ts.reaches("tcp", hostPort(t, "127.0.0.1", ln.Addr())), "%v %s: IPv4 client", mode, address)
			assert.True(t, ts.reaches("tcp", hostPort(t, "::1", ln.Addr())), "%v %s: IPv6 client", mode, address)
			require.NoError(t, ln.Close())
		}
	}
}

// TestNamespaceIPv6Disabled: with disable_ipv6=1 on all, default and lo,
// AF_INET6 sockets exist and [::] binds but ::1 is gone. Wildcards serve
// IPv4 in every mode; Auto on localhost binds 127.0.0.1 alone and says so;
// explicit modes on localhost fail, saying why, and hold nothing.
func TestNamespaceIPv6Disabled(t *testing.T) {
	netns.Enter(t, netns.DisableIPv6...)
	_, err := net.Listen("tcp6", "[::1]:0")
	require.Error(t, err, "::1 should be gone")

	for _, mode := range modes {
		ln, err := (&dualstack.ListenConfig{Mode: mode}).Listen(context.Background(), "tcp", ":0")
		require.NoError(t, err, mode)
		ts := serveTokens(t, ln)
		assert.True(t, ts.reaches("tcp", hostPort(t, "127.0.0.1", ln.Addr())), "%v: IPv4 client", mode)
		require.NoError(t, ln.Close())
	}

	ln, err := dualstack.Listen("tcp", "localhost:0")
	require.NoError(t, err)
	require.Len(t, ln.Addrs(), 1, "Auto on localhost holds 127.0.0.1 alone: %v", ln.Addrs())
	assert.Equal(t, "127.0.0.1", ln.Addr().(*net.TCPAddr).IP.String())
	assert.Equal(t, dualstack.Separate, ln.Mode())
	ts := serveTokens(t, ln)
	assert.True(t, ts.reaches("tcp", hostPort(t, "127.0.0.1", ln.Addr())))
	require.NoError(t, ln.Close())

	for _, tc := range []struct {
		mode Mode
		want string
	}{
		{dualstack.Separate, "Auto mode would listen on IPv4 alone"},
		{dualstack.Single, "Single mode"},
	} {
		checkFDs := requireNoFDLeak(t)
		ln, err := (&dualstack.ListenConfig{Mode: tc.mode}).Listen(context.Background(), "tcp", "localhost:0")
		require.Error(t, err, tc.mode)
		assert.Nil(t, ln)
		var oe *net.OpError
		require.ErrorAs(t, err, &oe)
		assert.Contains(t, err.Error(), tc.want)
		if tc.mode == dualstack.Separate {
			require.ErrorIs(t, err, syscall.EADDRNOTAVAIL)
		}
		checkFDs()
	}
}

// Mode is dualstack.Mode, for short table fields.
type Mode = dualstack.Mode

// TestNamespaceCrowdedPorts narrows the ephemeral range to ten ports and
// holds nine of them with other programs' listeners of every kind:
// 127.0.0.1, 0.0.0.0, [::1], IPv6-only [::], and SO_REUSEPORT ones. Two
// thousand Listen(":0") calls in each mode all land on the free port, and
// a token exchange over 127.0.0.1 and ::1 reaches the listener each time.
// With the last port held too, Listen fails with EADDRINUSE after its
// attempts and holds nothing.
func TestNamespaceCrowdedPorts(t *testing.T) {
	const lo, hi, free = 42000, 42009, 42005
	calls := 2000
	if testing.Short() {
		calls = 200
	}
	netns.Enter(t, netns.PortRange(lo, hi))

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
				require.NoError(t, syncExchange(ln, host), "%v call %d over %s", mode, i, host)
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
		require.ErrorIs(t, err, syscall.EADDRINUSE)
		var oe *net.OpError
		require.ErrorAs(t, err, &oe)
		assert.Contains(t, err.Error(), "gave up after 5 attempts", mode)
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

// syncExchange proves, on the calling goroutine, that a connection to host
// on ln's port reaches ln: it dials from a fixed port outside the
// ephemeral range, accepts, and has the accepted side echo a token. Both
// ends close with a reset, so no TIME_WAIT keeps the port.
func syncExchange(ln net.Listener, host string) error {
	from := &net.TCPAddr{IP: net.ParseIP(host), Port: 43000}
	d := net.Dialer{LocalAddr: from, Timeout: ioTimeout}
	c, err := d.Dial("tcp", net.JoinHostPort(host, fmt.Sprint(ln.Addr().(*net.TCPAddr).Port)))
	if err != nil {
		return err
	}
	defer func() {
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
	}()
	ln.(*dualstack.Listener).SetDeadline(time.Now().Add(ioTimeout))
	s, err := ln.Accept()
	if err != nil {
		return fmt.Errorf("the connection did not reach this listener: %w", err)
	}
	defer s.Close()
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

// TestNamespaceReusePortCannotShadow: a socket with SO_REUSEPORT on
// 127.0.0.1:P or [::1]:P, held before or bound after, never takes a
// connection from a listener this package returns.
func TestNamespaceReusePortCannotShadow(t *testing.T) {
	netns.Enter(t)
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
			require.NoError(t, syncExchange(ln, host), "%v over %s", mode, host)
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
	fd, err := unix.Socket(af, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
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
