//go:build unix

package dualstack_test

import (
	"context"
	"io"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/dualstack-go/dualstack"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/nettest"
	"golang.org/x/sys/unix"
)

func listenSingle(t testing.TB) *dualstack.Listener {
	t.Helper()
	ln, err := (&dualstack.ListenConfig{Mode: dualstack.Single}).Listen(context.Background(), "tcp", ":0")
	require.NoError(t, err)
	require.Equal(t, dualstack.Single, ln.Mode())
	t.Cleanup(func() { ln.Close() })
	return ln
}

// pair dials ln from host and returns the client's end and the accepted
// end.
func pair(t testing.TB, ln net.Listener, host string) (client, server net.Conn) {
	t.Helper()
	client, err := net.DialTimeout("tcp", hostPort(t, host, ln.Addr()), ioTimeout)
	require.NoError(t, err)
	t.Cleanup(func() { client.Close() })
	server, err = ln.Accept()
	require.NoError(t, err)
	t.Cleanup(func() { server.Close() })
	return client, server
}

// TestSingleConnAddrs: in Single mode every accepted connection reports
// its addresses unmapped; the kernel's own connection does not.
func TestSingleConnAddrs(t *testing.T) {
	t.Parallel()
	ln := listenSingle(t)
	mapped := mappedHost(t)
	for _, host := range []string{mapped, "127.0.0.1", "::1"} {
		client, server := pair(t, ln, host)
		sc, ok := server.(dualstack.Conn)
		require.True(t, ok, "Single mode accepts a dualstack.Conn, got %T", server)

		remote := server.RemoteAddr().(*net.TCPAddr).AddrPort()
		local := server.LocalAddr().(*net.TCPAddr).AddrPort()
		assert.Equal(t, client.LocalAddr().(*net.TCPAddr).AddrPort(), remote, "RemoteAddr is the client's address")
		assert.Equal(t, host, remote.Addr().String())
		assert.Equal(t, host, local.Addr().String())
		assert.Equal(t, host != "::1", remote.Addr().Is4())
		assert.Equal(t, remote.String(), server.RemoteAddr().String())

		raw := sc.NetConn().(*net.TCPConn).RemoteAddr().(*net.TCPAddr).AddrPort().Addr()
		switch {
		case host == mapped:
			assert.True(t, raw.Is4In6(), "the kernel reports the IPv4 peer mapped: %v", raw)
		case host == "::1":
			assert.Equal(t, raw, remote.Addr())
		}
	}
}

// TestSingleConnNettest runs golang.org/x/net/nettest's conformance suite
// on Single-mode connections, over both families.
func TestSingleConnNettest(t *testing.T) {
	ln := listenSingle(t)
	for _, host := range []string{mappedHost(t), "::1"} {
		t.Run(host, func(t *testing.T) {
			nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
				c2, err = net.DialTimeout("tcp", hostPort(t, host, ln.Addr()), ioTimeout)
				if err != nil {
					return nil, nil, nil, err
				}
				c1, err = ln.Accept()
				if err != nil {
					c2.Close()
					return nil, nil, nil, err
				}
				if _, ok := c1.(dualstack.Conn); !ok {
					t.Fatalf("accepted %T, not a dualstack.Conn", c1)
				}
				return c1, c2, func() { c1.Close(); c2.Close() }, nil
			})
		})
	}
}

// TestSingleConnKeepsTCPConn: the TCPConn's abilities are there, through
// the interfaces callers look for.
func TestSingleConnKeepsTCPConn(t *testing.T) {
	t.Parallel()
	ln := listenSingle(t)
	client, server := pair(t, ln, "127.0.0.1")

	_, ok := server.(interface{ NetConn() net.Conn })
	assert.True(t, ok, "NetConn")
	assert.IsType(t, (*net.TCPConn)(nil), server.(dualstack.Conn).NetConn())
	for name, ok := range map[string]bool{
		"io.ReaderFrom":      is[io.ReaderFrom](server),
		"io.WriterTo":        is[io.WriterTo](server),
		"syscall.Conn":       is[syscall.Conn](server),
		"CloseWrite":         is[interface{ CloseWrite() error }](server),
		"CloseRead":          is[interface{ CloseRead() error }](server),
		"SetKeepAlive":       is[interface{ SetKeepAlive(bool) error }](server),
		"SetKeepAlivePeriod": is[interface{ SetKeepAlivePeriod(time.Duration) error }](server),
		"SetKeepAliveConfig": is[interface {
			SetKeepAliveConfig(net.KeepAliveConfig) error
		}](server),
		"SetLinger":  is[interface{ SetLinger(int) error }](server),
		"SetNoDelay": is[interface{ SetNoDelay(bool) error }](server),
	} {
		assert.True(t, ok, name)
	}

	// They act on the socket: keep-alive and linger through SyscallConn.
	sc := server.(dualstack.Conn)
	require.NoError(t, sc.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: 77 * time.Second}))
	require.NoError(t, sc.SetLinger(3))
	raw, err := sc.SyscallConn()
	require.NoError(t, err)
	var idle int
	var linger *unix.Linger
	raw.Control(func(fd uintptr) {
		idle, _ = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, tcpKeepIdle)
		linger, _ = unix.GetsockoptLinger(int(fd), unix.SOL_SOCKET, unix.SO_LINGER)
	})
	assert.Equal(t, 77, idle)
	require.NotNil(t, linger)
	assert.NotZero(t, linger.Onoff, "on (the BSDs answer with the option's flag)")
	assert.EqualValues(t, 3, linger.Linger)

	// CloseWrite half-closes: the client reads what was sent, then EOF,
	// and can still write back.
	_, err = sc.Write([]byte("bye"))
	require.NoError(t, err)
	require.NoError(t, sc.CloseWrite())
	client.SetDeadline(time.Now().Add(ioTimeout))
	got, err := io.ReadAll(client)
	require.NoError(t, err)
	assert.Equal(t, "bye", string(got))
	_, err = client.Write([]byte("ok"))
	require.NoError(t, err)
	buf := make([]byte, 2)
	sc.SetDeadline(time.Now().Add(ioTimeout))
	_, err = io.ReadFull(sc, buf)
	require.NoError(t, err)
	assert.Equal(t, "ok", string(buf))
}

func is[I any](v any) bool {
	_, ok := v.(I)
	return ok
}

// TestAllowlistSeesIPv4: an allowlist of 127.0.0.0/8 admits an IPv4 client
// of a Single-mode listener; fed the kernel's own address it would not.
func TestAllowlistSeesIPv4(t *testing.T) {
	t.Parallel()
	allow := netip.MustParsePrefix("127.0.0.0/8")
	ln := listenSingle(t)
	_, server := pair(t, ln, mappedHost(t))

	ap := server.RemoteAddr().(*net.TCPAddr).AddrPort()
	assert.True(t, allow.Contains(ap.Addr()), "normalized %v admitted", ap)

	raw := server.(dualstack.Conn).NetConn().RemoteAddr().(*net.TCPAddr).AddrPort()
	assert.False(t, allow.Contains(raw.Addr()), "without normalization %v is refused", raw)

	fixed, ok := dualstack.AddrPortFrom(server.(dualstack.Conn).NetConn().RemoteAddr())
	require.True(t, ok)
	assert.True(t, allow.Contains(fixed.Addr()), "AddrPortFrom normalizes it too")
}
