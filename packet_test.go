//go:build unix

package dualstack_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dualstack-go/dualstack"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// packetImpls are the ways a PacketConn on several sockets reads: the
// host's (epoll on Linux) and the portable one.
var packetImpls = []struct {
	name   string
	listen func(*dualstack.ListenConfig, context.Context, string, string) (*dualstack.PacketConn, error)
}{
	{"host", (*dualstack.ListenConfig).ListenPacket},
	{"portable", dualstack.ListenPacketPortable},
}

// echo serves pc until it is closed: each packet comes back prefixed with
// a secret of this PacketConn and the source it was read from.
func echo(t testing.TB, pc *dualstack.PacketConn) (secret string) {
	secret = rand.Text()
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, src, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			reply := fmt.Sprintf("%s %s %s", secret, buf[:n], src)
			pc.WriteToUDPAddrPort([]byte(reply), src)
		}
	}()
	t.Cleanup(func() {
		pc.Close()
		<-done
	})
	return secret
}

// udpExchange sends a token to host on pc's port from a connected socket,
// which only takes replies from the address it sent to, and returns the
// source the server saw.
func udpExchange(pc *dualstack.PacketConn, host, secret string) (string, error) {
	return udpExchangeFrom(pc, host, secret, 0)
}

// udpExchangeFrom is udpExchange from a given client port; 0 is any.
func udpExchangeFrom(pc *dualstack.PacketConn, host, secret string, from int) (string, error) {
	d := net.Dialer{LocalAddr: &net.UDPAddr{IP: net.ParseIP(host), Port: from}}
	c, err := d.Dial("udp", net.JoinHostPort(host, fmt.Sprint(pc.LocalAddr().(*net.UDPAddr).Port)))
	if err != nil {
		return "", err
	}
	defer c.Close()
	token := rand.Text()
	buf := make([]byte, 2048)
	for try := 0; try < 3; try++ { // loopback does not lose packets, but be kind
		c.SetDeadline(time.Now().Add(time.Second))
		if _, err := c.Write([]byte(token)); err != nil {
			return "", err
		}
		n, err := c.Read(buf)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				continue
			}
			return "", err
		}
		f := strings.Fields(string(buf[:n]))
		if len(f) != 3 || f[0] != secret || f[1] != token {
			return "", fmt.Errorf("answer %q is not from this PacketConn", buf[:n])
		}
		return f[2], nil
	}
	return "", fmt.Errorf("no answer over %s", host)
}

// TestListenPacketForms: for each mode and address form, which of
// 127.0.0.1 and ::1 reach the PacketConn, the reply comes from the address
// the client sent to, and sources are reported unmapped.
func TestListenPacketForms(t *testing.T) {
	t.Parallel()
	loopback := loopbackName(t)
	tests := []struct {
		network, address string
		single           bool // the form Single serves on one dual-stack socket
		v4, v6           bool
		addrs            []string // with Auto and Separate
	}{
		{"udp", ":0", true, true, true, []string{"0.0.0.0", "::"}},
		{"udp", "[::]:0", true, true, true, []string{"0.0.0.0", "::"}},
		{"udp", "localhost:0", false, true, true, []string{"127.0.0.1", "::1"}},
		{"udp", "127.0.0.1:0", false, true, false, []string{"127.0.0.1"}},
		{"udp", "[::1]:0", false, false, true, []string{"::1"}},
		{"udp", "[::ffff:127.0.0.1]:0", false, true, false, []string{"127.0.0.1"}},
		{"udp", "[::1%" + loopback + "]:0", false, false, true, []string{"::1"}},
		{"udp4", ":0", false, true, false, []string{"0.0.0.0"}},
		{"udp6", ":0", false, false, true, []string{"::"}},
	}
	for _, tc := range tests {
		for _, mode := range modes {
			for _, impl := range packetImpls {
				t.Run(fmt.Sprintf("%s %s/%v/%s", tc.network, tc.address, mode, impl.name), func(t *testing.T) {
					t.Parallel()
					pc, err := impl.listen(&dualstack.ListenConfig{Mode: mode}, context.Background(), tc.network, tc.address)
					if mode == dualstack.Single && !tc.single {
						// Single serves both families' wildcard on one
						// socket, or refuses.
						require.ErrorContains(t, err, "Single mode serves")
						return
					}
					require.NoError(t, err)
					secret := echo(t, pc)
					var hosts []string
					for _, a := range pc.Addrs() {
						hosts = append(hosts, a.(*net.UDPAddr).IP.String())
						assert.Equal(t, pc.LocalAddr().(*net.UDPAddr).Port, a.(*net.UDPAddr).Port, "one port")
					}
					wantMode := dualstack.Separate
					if mode == dualstack.Single && tc.single {
						wantMode = dualstack.Single
						assert.Equal(t, []string{"::"}, hosts)
					} else {
						assert.Equal(t, tc.addrs, hosts)
					}
					assert.Equal(t, wantMode, pc.Mode())
					for _, c := range []struct {
						host string
						want bool
					}{{"127.0.0.1", tc.v4}, {"::1", tc.v6}} {
						src, err := udpExchange(pc, c.host, secret)
						if !c.want {
							assert.Error(t, err, "%s should not reach it", c.host)
							continue
						}
						require.NoError(t, err, c.host)
						ap := netip.MustParseAddrPort(src)
						assert.Equal(t, c.host, ap.Addr().String(), "the source is reported unmapped")
					}
				})
			}
		}
	}
}

// TestPacketConnWrites: a write leaves through the socket of the
// destination's family; an IPv4-mapped destination is IPv4; Single mode
// writes to plain IPv4 destinations; a family the PacketConn lacks is an
// error.
func TestPacketConnWrites(t *testing.T) {
	t.Parallel()
	for _, mode := range []dualstack.Mode{dualstack.Separate, dualstack.Single} {
		pc, err := (&dualstack.ListenConfig{Mode: mode}).ListenPacket(context.Background(), "udp", ":0")
		require.NoError(t, err)
		defer pc.Close()
		port := pc.LocalAddr().(*net.UDPAddr).Port
		for _, dst := range []string{"127.0.0.1", "::ffff:127.0.0.1", "::1"} {
			family := "udp4"
			listenOn := "127.0.0.1:0"
			if dst == "::1" {
				family, listenOn = "udp6", "[::1]:0"
			}
			peer, err := net.ListenPacket(family, listenOn)
			require.NoError(t, err)
			defer peer.Close()
			to := netip.AddrPortFrom(netip.MustParseAddr(dst), uint16(peer.LocalAddr().(*net.UDPAddr).Port))
			_, err = pc.WriteToUDPAddrPort([]byte("hi"), to)
			require.NoError(t, err, "%v to %v", mode, to)
			buf := make([]byte, 16)
			peer.SetReadDeadline(time.Now().Add(ioTimeout))
			n, from, err := peer.ReadFrom(buf)
			require.NoError(t, err)
			assert.Equal(t, "hi", string(buf[:n]))
			assert.Equal(t, port, from.(*net.UDPAddr).Port, "%v: sent from our port", mode)
			// WriteTo with a *net.UDPAddr too.
			_, err = pc.WriteTo([]byte("ho"), net.UDPAddrFromAddrPort(to))
			require.NoError(t, err)
		}
	}

	pc, err := dualstack.ListenPacket("udp4", "127.0.0.1:0")
	require.NoError(t, err)
	defer pc.Close()
	_, err = pc.WriteToUDPAddrPort([]byte("x"), netip.MustParseAddrPort("[::1]:9"))
	var oe *net.OpError
	require.ErrorAs(t, err, &oe)
	assert.Equal(t, "write", oe.Op)
	_, err = pc.WriteTo([]byte("x"), &net.TCPAddr{})
	require.ErrorIs(t, err, syscall.EINVAL)
}

// TestPacketConnDeadlinesAndClose: a read past its deadline times out, a
// blocked read wakes when the deadline moves into the past or on Close,
// and Close leaves no goroutine or descriptor.
func TestPacketConnDeadlinesAndClose(t *testing.T) {
	for _, impl := range packetImpls {
		for _, mode := range []dualstack.Mode{dualstack.Separate, dualstack.Single} {
			t.Run(fmt.Sprintf("%s/%v", impl.name, mode), func(t *testing.T) {
				checkFDs := requireNoFDLeak(t)
				pc, err := impl.listen(&dualstack.ListenConfig{Mode: mode}, context.Background(), "udp", "localhost:0")
				if mode == dualstack.Single {
					pc, err = impl.listen(&dualstack.ListenConfig{Mode: mode}, context.Background(), "udp", ":0")
				}
				require.NoError(t, err)
				buf := make([]byte, 64)

				require.NoError(t, pc.SetReadDeadline(time.Now().Add(20*time.Millisecond)))
				_, _, err = pc.ReadFrom(buf)
				requireTimeout(t, err)

				require.NoError(t, pc.SetDeadline(time.Time{}))
				errc := make(chan error, 1)
				go func() {
					_, _, err := pc.ReadFromUDPAddrPort(buf)
					errc <- err
				}()
				time.Sleep(20 * time.Millisecond)
				require.NoError(t, pc.SetReadDeadline(time.Now().Add(-time.Second)))
				select {
				case err := <-errc:
					requireTimeout(t, err)
				case <-time.After(ioTimeout):
					t.Fatal("moving the deadline into the past did not wake the read")
				}

				require.NoError(t, pc.SetReadDeadline(time.Time{}))
				go func() {
					_, _, err := pc.ReadFromUDPAddrPort(buf)
					errc <- err
				}()
				time.Sleep(20 * time.Millisecond)
				require.NoError(t, pc.Close())
				select {
				case err := <-errc:
					require.ErrorIs(t, err, net.ErrClosed)
					var oe *net.OpError
					require.ErrorAs(t, err, &oe)
					assert.Equal(t, "read", oe.Op)
				case <-time.After(ioTimeout):
					t.Fatal("Close did not wake the read")
				}
				_, _, err = pc.ReadFrom(buf)
				require.ErrorIs(t, err, net.ErrClosed)
				_, err = pc.WriteToUDPAddrPort(buf, netip.MustParseAddrPort("127.0.0.1:9"))
				require.ErrorIs(t, err, net.ErrClosed)
				require.ErrorIs(t, pc.Close(), net.ErrClosed)
				requireNoListenerGoroutines(t)
				checkFDs()
			})
		}
	}
}

func requireTimeout(t *testing.T, err error) {
	t.Helper()
	var ne net.Error
	require.ErrorAs(t, err, &ne)
	require.True(t, ne.Timeout(), "%v", err)
	require.ErrorIs(t, err, os.ErrDeadlineExceeded)
}

// TestPacketConnFairness: with packets waiting on both families, reads
// alternate between them.
func TestPacketConnFairness(t *testing.T) {
	t.Parallel()
	pc, err := dualstack.ListenPacket("udp", "localhost:0")
	require.NoError(t, err)
	defer pc.Close()
	for _, host := range []string{"127.0.0.1", "::1"} {
		c, err := net.Dial("udp", hostPort(t, host, pc.LocalAddr()))
		require.NoError(t, err)
		defer c.Close()
		for range 100 {
			_, err := c.Write([]byte(host))
			require.NoError(t, err)
		}
	}
	count := map[bool]int{}
	var seq []bool
	buf := make([]byte, 64)
	pc.SetReadDeadline(time.Now().Add(ioTimeout))
	for range 100 {
		_, src, err := pc.ReadFromUDPAddrPort(buf)
		require.NoError(t, err)
		count[src.Addr().Is4()]++
		seq = append(seq, src.Addr().Is4())
	}
	assert.Equal(t, map[bool]int{true: 50, false: 50}, count, "reads alternate while both have packets")
	assert.LessOrEqual(t, longestRun(seq), 2, "the longest run of one family: %v", seq)
}

// TestPacketReadAllocations: ReadFromUDPAddrPort allocates nothing, in
// every mode and with both readers, as on a net.UDPConn.
func TestPacketReadAllocations(t *testing.T) {
	for _, impl := range packetImpls {
		for _, mode := range []dualstack.Mode{dualstack.Separate, dualstack.Single} {
			pc, err := impl.listen(&dualstack.ListenConfig{Mode: mode}, context.Background(), "udp", ":0")
			require.NoError(t, err)
			defer pc.Close()
			var clients []net.Conn
			for _, host := range []string{"127.0.0.1", "::1"} {
				c, err := net.Dial("udp", hostPort(t, host, pc.LocalAddr()))
				require.NoError(t, err)
				defer c.Close()
				clients = append(clients, c)
			}
			msg, buf := []byte("x"), make([]byte, 64)
			pc.SetReadDeadline(time.Now().Add(ioTimeout))
			i := 0
			allocs := testing.AllocsPerRun(200, func() {
				clients[i%2].Write(msg)
				i++
				if _, _, err := pc.ReadFromUDPAddrPort(buf); err != nil {
					t.Fatal(err)
				}
			})
			assert.Zero(t, allocs, "%s %v", impl.name, mode)
		}
	}
}

// TestListenPacketErrors: bad input is a *net.OpError, never a panic or an
// open descriptor.
func TestListenPacketErrors(t *testing.T) {
	for _, tc := range []struct {
		network, address string
		check            func(*testing.T, error)
	}{
		{"tcp", ":0", isUnknownNetwork},
		{"udp7", ":0", isUnknownNetwork},
		{"udp", "nope", isAddrError("missing port")},
		{"udp", ":65536", isAddrError("invalid port")},
		{"udp4", "[::1]:0", isAddrError("no suitable address")},
		{"udp", "192.0.2.123:0", isErrno(syscall.EADDRNOTAVAIL)},
	} {
		checkFDs := requireNoFDLeak(t)
		var pc *dualstack.PacketConn
		var err error
		require.NotPanics(t, func() { pc, err = dualstack.ListenPacket(tc.network, tc.address) })
		assert.Nil(t, pc)
		var oe *net.OpError
		require.ErrorAs(t, err, &oe, "%s %s", tc.network, tc.address)
		assert.Equal(t, "listen", oe.Op)
		tc.check(t, err)
		checkFDs()
	}
	// Held explicit port.
	h, err := net.ListenPacket("udp4", "127.0.0.1:0")
	require.NoError(t, err)
	defer h.Close()
	_, err = dualstack.ListenPacket("udp", fmt.Sprintf(":%d", h.LocalAddr().(*net.UDPAddr).Port))
	require.ErrorIs(t, err, syscall.EADDRINUSE)
}

// TestCrowdedUDPPorts: in a ten-port ephemeral range with nine
// ports held by UDP sockets of every kind, ListenPacket(":0") always lands
// on the free one, in each mode, and never shares a port with a holder;
// with every port held it fails with EADDRINUSE and holds nothing.
func TestCrowdedUDPPorts(t *testing.T) {
	const lo, hi, free = 42000, 42009, 42003
	ownKernel(t)
	ownPortRange(t, lo, hi)
	holders := map[int][][2]string{
		42000: {{"udp4", "127.0.0.1"}},
		42001: {{"udp4", "0.0.0.0"}},
		42002: {{"udp6", "::1"}},
		42004: {{"udp6", "::"}},
		42005: {{"udp4", "127.0.0.1"}, {"udp6", "::1"}},
		42006: {{"udp", "::"}}, // dual-stack
		42007: {{"udp4", "0.0.0.0"}, {"udp6", "::"}},
		42008: {{"udp6", "::1"}},
		42009: {{"udp4", "127.0.0.1"}},
	}
	for port, hs := range holders {
		for _, h := range hs {
			pc, err := net.ListenPacket(h[0], net.JoinHostPort(h[1], fmt.Sprint(port)))
			require.NoError(t, err, "holder %v on %d", h, port)
			defer pc.Close()
		}
	}
	for _, mode := range modes {
		for i := range 300 {
			pc, err := (&dualstack.ListenConfig{Mode: mode}).ListenPacket(context.Background(), "udp", ":0")
			require.NoError(t, err, "%v %d", mode, i)
			for _, a := range pc.Addrs() {
				require.Equal(t, free, a.(*net.UDPAddr).Port, "%v %d", mode, i)
			}
			if i%50 == 0 {
				secret := echoSync(t, pc)
				for _, host := range []string{"127.0.0.1", "::1"} {
					// From a port outside the range: the client's own
					// ephemeral port would find none free.
					_, err := udpExchangeFrom(pc, host, secret, 43000)
					require.NoError(t, err, "%v over %s", mode, host)
				}
			}
			require.NoError(t, pc.Close())
		}
	}
	last, err := net.ListenPacket("udp6", fmt.Sprintf("[::1]:%d", free))
	require.NoError(t, err)
	defer last.Close()
	for _, mode := range modes {
		checkFDs := requireNoFDLeak(t)
		_, err := (&dualstack.ListenConfig{Mode: mode, Attempts: 3}).ListenPacket(context.Background(), "udp", ":0")
		require.ErrorIs(t, err, syscall.EADDRINUSE, mode)
		checkFDs()
	}
}

// echoSync is echo for namespace tests: its goroutine only reads and
// writes on sockets made in the namespace.
func echoSync(t testing.TB, pc *dualstack.PacketConn) string {
	secret := rand.Text()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 2048)
		for {
			n, src, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			pc.WriteToUDPAddrPort([]byte(fmt.Sprintf("%s %s %s", secret, buf[:n], src)), src)
		}
	}()
	t.Cleanup(func() {
		pc.Close()
		wg.Wait()
	})
	return secret
}

// TestZeroPacketConn: the methods of a PacketConn that ListenPacket did
// not return fail with EINVAL and never panic.
func TestZeroPacketConn(t *testing.T) {
	t.Parallel()
	for name, pc := range map[string]*dualstack.PacketConn{"new": new(dualstack.PacketConn), "nil": nil} {
		t.Run(name, func(t *testing.T) {
			require.NotPanics(t, func() {
				buf := make([]byte, 8)
				_, _, err := pc.ReadFromUDPAddrPort(buf)
				require.ErrorIs(t, err, syscall.EINVAL)
				var oe *net.OpError
				require.ErrorAs(t, err, &oe)
				assert.Equal(t, "read", oe.Op)
				_, _, err = pc.ReadFrom(buf)
				require.ErrorIs(t, err, syscall.EINVAL)
				_, err = pc.WriteToUDPAddrPort(buf, netip.MustParseAddrPort("127.0.0.1:9"))
				require.ErrorIs(t, err, syscall.EINVAL)
				_, err = pc.WriteTo(buf, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9})
				require.ErrorIs(t, err, syscall.EINVAL)
				require.ErrorIs(t, pc.SetDeadline(time.Now()), syscall.EINVAL)
				require.ErrorIs(t, pc.SetReadDeadline(time.Now()), syscall.EINVAL)
				require.ErrorIs(t, pc.SetWriteDeadline(time.Now()), syscall.EINVAL)
				require.ErrorIs(t, pc.Close(), syscall.EINVAL)
				assert.Nil(t, pc.LocalAddr())
				assert.Empty(t, pc.Addrs())
				assert.Equal(t, dualstack.Auto, pc.Mode())
			})
		})
	}
}

// TestPacketRepliesFromTheAddressAsked: with two IPv4 addresses (a host
// name's), a reply to a datagram's source leaves from the address the
// datagram was sent to: a connected client, which takes datagrams from
// that address only, gets it. Clients alternate between the addresses.
func TestPacketRepliesFromTheAddressAsked(t *testing.T) {
	second := "127.0.0.2"
	if c, err := net.ListenPacket("udp4", second+":0"); err != nil {
		t.Skipf("%s is not a local address here: %v", second, err)
	} else {
		c.Close()
	}
	lookup := func(context.Context, string, string) ([]netip.Addr, error) {
		return []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr(second)}, nil
	}
	for _, portable := range []bool{false, true} {
		t.Run(fmt.Sprintf("portable=%v", portable), func(t *testing.T) {
			pc, err := dualstack.ListenPacketResolving(context.Background(), &dualstack.ListenConfig{}, lookup, portable, "udp", "two.test:0")
			require.NoError(t, err)
			defer pc.Close()
			require.Len(t, pc.Addrs(), 2)
			port := pc.LocalAddr().(*net.UDPAddr).Port
			for i, host := range []string{second, "127.0.0.1", second, second, "127.0.0.1"} {
				client, err := net.Dial("udp4", net.JoinHostPort(host, strconv.Itoa(port)))
				require.NoError(t, err)
				defer client.Close()
				token := rand.Text()
				_, err = client.Write([]byte(token))
				require.NoError(t, err)
				buf := make([]byte, 64)
				pc.SetReadDeadline(time.Now().Add(ioTimeout))
				n, src, err := pc.ReadFromUDPAddrPort(buf)
				require.NoError(t, err)
				require.Equal(t, token, string(buf[:n]))
				_, err = pc.WriteToUDPAddrPort(buf[:n], src)
				require.NoError(t, err)
				client.SetReadDeadline(time.Now().Add(ioTimeout))
				n, err = client.Read(buf)
				require.NoError(t, err, "client %d of %s: no reply from the address it wrote to", i, host)
				assert.Equal(t, token, string(buf[:n]))
			}
		})
	}
}

// TestSecondCloseNamesTheAddr: closing twice fails with net.ErrClosed and
// names the address that Addr or LocalAddr reports, TCP and UDP.
func TestSecondCloseNamesTheAddr(t *testing.T) {
	t.Parallel()
	for _, address := range []string{":0", "localhost:0"} {
		ln, err := dualstack.Listen("tcp", address)
		require.NoError(t, err)
		require.NoError(t, ln.Close())
		err = ln.Close()
		require.ErrorIs(t, err, net.ErrClosed)
		assert.Equal(t, "close tcp "+ln.Addr().String()+": use of closed network connection", err.Error())

		pc, err := dualstack.ListenPacket("udp", address)
		require.NoError(t, err)
		require.NoError(t, pc.Close())
		err = pc.Close()
		require.ErrorIs(t, err, net.ErrClosed)
		assert.Equal(t, "close udp "+pc.LocalAddr().String()+": use of closed network connection", err.Error())
	}
}
