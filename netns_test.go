//go:build linux

package dualstack_test

import (
	"context"
	"net"
	"syscall"
	"testing"

	"github.com/dualstack-go/dualstack"
	"github.com/dualstack-go/dualstack/internal/netns"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// These tests run in private network namespaces (see internal/netns):
// everything that opens a socket runs on the test's own goroutine.

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

// TestNamespaceNoIPv4Loopback: with 127.0.0.1 taken off lo, Auto on
// localhost binds ::1 alone and says so, TCP and UDP, as it binds
// 127.0.0.1 alone where ::1 is gone; Separate fails, saying why, and holds
// nothing.
func TestNamespaceNoIPv4Loopback(t *testing.T) {
	netns.Enter(t)
	netns.RemoveIPv4Loopback(t)
	_, err := net.Listen("tcp4", "127.0.0.1:0")
	require.Error(t, err, "127.0.0.1 should be gone")

	ln, err := dualstack.Listen("tcp", "localhost:0")
	require.NoError(t, err)
	require.Len(t, ln.Addrs(), 1, "Auto on localhost holds ::1 alone: %v", ln.Addrs())
	assert.Equal(t, "::1", ln.Addr().(*net.TCPAddr).IP.String())
	ts := serveTokens(t, ln)
	assert.True(t, ts.reaches("tcp", hostPort(t, "::1", ln.Addr())))
	require.NoError(t, ln.Close())

	pc, err := dualstack.ListenPacket("udp", "localhost:0")
	require.NoError(t, err)
	require.Len(t, pc.Addrs(), 1, "Auto on localhost holds ::1 alone: %v", pc.Addrs())
	assert.Equal(t, "::1", pc.LocalAddr().(*net.UDPAddr).IP.String())
	require.NoError(t, pc.Close())

	checkFDs := requireNoFDLeak(t)
	_, err = (&dualstack.ListenConfig{Mode: dualstack.Separate}).Listen(context.Background(), "tcp", "localhost:0")
	require.ErrorIs(t, err, syscall.EADDRNOTAVAIL)
	assert.Contains(t, err.Error(), "Auto mode would listen on IPv6 alone")
	checkFDs()
}

// TestNamespaceRangeExhausted: with every ephemeral port held, Listen on
// port 0 fails at once and says why, instead of retrying to the limit.
func TestNamespaceRangeExhausted(t *testing.T) {
	netns.Enter(t, netns.PortRange(42700, 42701))
	for _, p := range []string{"42700", "42701"} {
		ln, err := net.Listen("tcp", "[::]:"+p) // dual-stack: both families
		require.NoError(t, err)
		defer ln.Close()
	}
	for _, address := range []string{":0", "localhost:0"} {
		checkFDs := requireNoFDLeak(t)
		_, err := dualstack.Listen("tcp", address)
		require.ErrorIs(t, err, syscall.EADDRINUSE, address)
		assert.Contains(t, err.Error(), "no free port left in the ephemeral range", address)
		assert.NotContains(t, err.Error(), "attempts", "%s: retrying cannot help", address)
		checkFDs()
	}
}
