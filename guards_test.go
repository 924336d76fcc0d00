//go:build linux || darwin || dragonfly || freebsd || netbsd || openbsd

package dualstack_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"testing"

	"github.com/dualstack-go/dualstack"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestGuardsAreInvisible: whatever a kernel needs to keep later binders
// off a listener's port (guard sockets on macOS and FreeBSD, nothing on
// Linux), a wildcard listener lists its two addresses only, accepts
// connections to the loopback addresses with those as local addresses, is
// refused to a later bind of 127.0.0.1:P or [::1]:P even with
// SO_REUSEADDR, and once closed leaves the port free and no descriptor
// open.
func TestGuardsAreInvisible(t *testing.T) {
	for _, mode := range []dualstack.Mode{dualstack.Separate, dualstack.Single} {
		t.Run(mode.String(), func(t *testing.T) {
			checkFDs := requireNoFDLeak(t)
			ln, err := (&dualstack.ListenConfig{Mode: mode}).Listen(context.Background(), "tcp", ":0")
			require.NoError(t, err)
			port := portOf(t, ln.Addr())
			want := []string{"0.0.0.0", "::"}
			if mode == dualstack.Single {
				want = []string{"::"}
			}
			var got []string
			for _, a := range ln.Addrs() {
				got = append(got, a.(*net.TCPAddr).IP.String())
			}
			assert.Equal(t, want, got)

			for _, host := range []string{"127.0.0.1", "::1"} {
				client, server := pair(t, ln, host)
				assert.Equal(t, netip.AddrPortFrom(netip.MustParseAddr(host), uint16(port)),
					server.LocalAddr().(*net.TCPAddr).AddrPort(), "local address of a connection to %s", host)
				assert.Equal(t, client.LocalAddr().String(), server.RemoteAddr().String())
				// Reset both ends, so that no TIME_WAIT holds the port.
				for _, c := range []net.Conn{client, server} {
					c.(interface{ SetLinger(int) error }).SetLinger(0)
					c.Close()
				}

				s := sock{host: host, opts: []int{unix.SO_REUSEADDR}}
				fd, _, err := s.open(port)
				if err == nil {
					unix.Close(fd)
				}
				require.ErrorIs(t, err, unix.EADDRINUSE, "a later %v bound next to the listener", s)
			}
			require.NoError(t, ln.Close())
			for _, host := range []string{"127.0.0.1", "::1"} {
				fd, _, err := sock{host: host}.open(port)
				require.NoError(t, err, "the port is free on %s after Close", host)
				unix.Close(fd)
			}
			checkFDs()
		})
	}
}

// TestAddrAsNetListen: Addr reports what net.Listen reports for the same
// network and address: the IPv6 wildcard for a wildcard served on both
// families, the address itself otherwise.
func TestAddrAsNetListen(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ network, address string }{
		{"tcp", ":0"}, {"tcp", "0.0.0.0:0"}, {"tcp", "[::]:0"}, {"tcp4", ":0"}, {"tcp6", ":0"},
		{"tcp", "127.0.0.1:0"}, {"tcp", "[::1]:0"},
	} {
		t.Run(fmt.Sprintf("%s %s", tc.network, tc.address), func(t *testing.T) {
			t.Parallel()
			ours, err := dualstack.Listen(tc.network, tc.address)
			require.NoError(t, err)
			defer ours.Close()
			theirs, err := net.Listen(tc.network, tc.address)
			require.NoError(t, err)
			defer theirs.Close()
			assert.Equal(t, theirs.Addr().(*net.TCPAddr).IP.String(), ours.Addr().(*net.TCPAddr).IP.String())
			pc, err := dualstack.ListenPacket("udp"+tc.network[3:], tc.address)
			require.NoError(t, err)
			defer pc.Close()
			assert.Equal(t, theirs.Addr().(*net.TCPAddr).IP.String(), pc.LocalAddr().(*net.UDPAddr).IP.String(), "PacketConn")
		})
	}
}

// TestPacketGuardsAreInvisible is TestGuardsAreInvisible for UDP: a
// wildcard PacketConn lists its own addresses only, answers datagrams to
// both loopback addresses from the address they were sent to, is refused
// to a later bind of 127.0.0.1:P or [::1]:P with SO_REUSEADDR or
// SO_REUSEPORT, and once closed leaves the port free and nothing open.
func TestPacketGuardsAreInvisible(t *testing.T) {
	for _, mode := range []dualstack.Mode{dualstack.Separate, dualstack.Single} {
		t.Run(mode.String(), func(t *testing.T) {
			checkFDs := requireNoFDLeak(t)
			pc, err := (&dualstack.ListenConfig{Mode: mode}).ListenPacket(context.Background(), "udp", ":0")
			require.NoError(t, err)
			port := portOf(t, pc.LocalAddr())
			wantAddrs := 2
			if mode == dualstack.Single {
				wantAddrs = 1
			}
			assert.Len(t, pc.Addrs(), wantAddrs)
			for _, host := range []string{"127.0.0.1", "::1"} {
				require.NoError(t, udpExchangeWithin(pc, host, reachWait), "over %s", host)
				for _, opt := range []int{unix.SO_REUSEADDR, unix.SO_REUSEPORT} {
					s := sock{udp: true, host: host, opts: []int{opt}}
					fd, _, err := s.open(port)
					if err == nil {
						unix.Close(fd)
					}
					require.ErrorIs(t, err, unix.EADDRINUSE, "a later %v bound next to the PacketConn", s)
				}
			}
			require.NoError(t, pc.Close())
			for _, host := range []string{"127.0.0.1", "::1"} {
				fd, _, err := sock{udp: true, host: host}.open(port)
				require.NoError(t, err, "the port is free on %s after Close", host)
				unix.Close(fd)
			}
			checkFDs()
		})
	}
}

// TestControlCannotSharePickedPort: a Control that turns on an option
// letting other sockets share the port (SO_REUSEPORT, SO_REUSEPORT_LB, or
// SO_REUSEADDR where Listen left it off) fails a Listen on port 0, naming
// the option, and leaves nothing open; on an explicit port it is the
// caller's choice, and other options are always allowed.
func TestControlCannotSharePickedPort(t *testing.T) {
	setting := func(opt int) func(string, string, syscall.RawConn) error {
		return func(_, _ string, c syscall.RawConn) error {
			var err error
			c.Control(func(fd uintptr) { err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, opt, 1) })
			return err
		}
	}
	refused := []struct {
		name string
		opt  int
	}{{"SO_REUSEPORT", unix.SO_REUSEPORT}, {"SO_REUSEADDR", unix.SO_REUSEADDR}}
	if soReusePortLB != 0 {
		refused = append(refused, struct {
			name string
			opt  int
		}{"SO_REUSEPORT_LB", soReusePortLB})
	}
	for _, mode := range []dualstack.Mode{dualstack.Separate, dualstack.Single} {
		for _, r := range refused {
			for _, network := range []string{"tcp", "udp"} {
				t.Run(fmt.Sprintf("%v %s %s", mode, network, r.name), func(t *testing.T) {
					checkFDs := requireNoFDLeak(t)
					lc := dualstack.ListenConfig{Mode: mode, Control: setting(r.opt)}
					var err error
					if network == "tcp" {
						_, err = lc.Listen(context.Background(), network, ":0")
					} else {
						_, err = lc.ListenPacket(context.Background(), network, ":0")
					}
					require.Error(t, err)
					var oe *net.OpError
					require.ErrorAs(t, err, &oe)
					assert.Contains(t, err.Error(), "Control set "+r.name)
					checkFDs()
				})
			}
		}
	}
	t.Run("explicit port", func(t *testing.T) {
		free, err := net.Listen("tcp", ":0")
		require.NoError(t, err)
		port := portOf(t, free.Addr())
		free.Close()
		lc := dualstack.ListenConfig{Control: setting(unix.SO_REUSEPORT)}
		ln, err := lc.Listen(context.Background(), "tcp", fmt.Sprintf(":%d", port))
		require.NoError(t, err, "SO_REUSEPORT on an explicit port is the caller's choice")
		ln.Close()
	})
	t.Run("other options", func(t *testing.T) {
		lc := dualstack.ListenConfig{Control: setting(unix.SO_KEEPALIVE)}
		ln, err := lc.Listen(context.Background(), "tcp", ":0")
		require.NoError(t, err)
		ln.Close()
	})
}
