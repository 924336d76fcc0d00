//go:build unix

package dualstack_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dualstack-go/dualstack"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

var modes = []dualstack.Mode{dualstack.Auto, dualstack.Separate, dualstack.Single}

// TestListenForms listens on each address form in each mode and proves,
// by a token exchange, which of 127.0.0.1 and ::1 reach the listener.
func TestListenForms(t *testing.T) {
	t.Parallel()
	loopback := loopbackName(t)
	type want struct {
		v4, v6 bool // reached from 127.0.0.1, from ::1
		addrs  []string
		mode   dualstack.Mode // the mode in force; 0 means the one asked, Auto meaning Separate
		err    bool
	}
	tests := []struct {
		name    string
		network string
		address string
		want    map[dualstack.Mode]want // by mode asked; a missing mode is want[Auto]
	}{
		// The wildcard in its three spellings: both families, one port.
		{"empty host", "tcp", ":0", map[dualstack.Mode]want{
			dualstack.Auto:   {v4: true, v6: true, addrs: []string{"0.0.0.0", "::"}},
			dualstack.Single: {v4: true, v6: true, addrs: []string{"::"}},
		}},
		{"IPv4 wildcard", "tcp", "0.0.0.0:0", map[dualstack.Mode]want{
			dualstack.Auto:   {v4: true, v6: true, addrs: []string{"0.0.0.0", "::"}},
			dualstack.Single: {v4: true, v6: true, addrs: []string{"::"}},
		}},
		{"IPv6 wildcard", "tcp", "[::]:0", map[dualstack.Mode]want{
			dualstack.Auto:   {v4: true, v6: true, addrs: []string{"0.0.0.0", "::"}},
			dualstack.Single: {v4: true, v6: true, addrs: []string{"::"}},
		}},
		// localhost: both loopbacks on one port; one socket cannot hold
		// two addresses, so Single refuses.
		{"localhost", "tcp", "localhost:0", map[dualstack.Mode]want{
			dualstack.Auto:   {v4: true, v6: true, addrs: []string{"127.0.0.1", "::1"}},
			dualstack.Single: {err: true},
		}},
		{"LOCALHOST. with service name", "tcp", "LOCALHOST.:", map[dualstack.Mode]want{
			dualstack.Auto:   {v4: true, v6: true, addrs: []string{"127.0.0.1", "::1"}},
			dualstack.Single: {err: true},
		}},
		// Literals get one socket of their family; Single, which serves
		// both families' wildcard, refuses them (no mode changes quietly).
		{"IPv4 literal", "tcp", "127.0.0.1:0", map[dualstack.Mode]want{
			dualstack.Auto: {v4: true, addrs: []string{"127.0.0.1"}, mode: dualstack.Separate},
		}},
		{"IPv6 literal", "tcp", "[::1]:0", map[dualstack.Mode]want{
			dualstack.Auto: {v6: true, addrs: []string{"::1"}, mode: dualstack.Separate},
		}},
		{"IPv4-mapped literal is IPv4", "tcp", "[::ffff:127.0.0.1]:0", map[dualstack.Mode]want{
			dualstack.Auto: {v4: true, addrs: []string{"127.0.0.1"}, mode: dualstack.Separate},
		}},
		{"zone-scoped IPv6 literal", "tcp", "[::1%" + loopback + "]:0", map[dualstack.Mode]want{
			dualstack.Auto: {v6: true, addrs: []string{"::1"}, mode: dualstack.Separate},
		}},
		{"numeric zone", "tcp", "[::1%1]:0", map[dualstack.Mode]want{
			dualstack.Auto: {v6: true, addrs: []string{"::1"}, mode: dualstack.Separate},
		}},
		// One family asked for: one socket of it.
		{"tcp4 wildcard", "tcp4", ":0", map[dualstack.Mode]want{
			dualstack.Auto: {v4: true, addrs: []string{"0.0.0.0"}, mode: dualstack.Separate},
		}},
		{"tcp4 with IPv6 wildcard", "tcp4", "[::]:0", map[dualstack.Mode]want{
			dualstack.Auto: {v4: true, addrs: []string{"0.0.0.0"}, mode: dualstack.Separate},
		}},
		{"tcp6 wildcard", "tcp6", ":0", map[dualstack.Mode]want{
			dualstack.Auto: {v6: true, addrs: []string{"::"}, mode: dualstack.Separate},
		}},
		{"tcp4 localhost", "tcp4", "localhost:0", map[dualstack.Mode]want{
			dualstack.Auto: {v4: true, addrs: []string{"127.0.0.1"}, mode: dualstack.Separate},
		}},
		{"tcp6 localhost", "tcp6", "localhost:0", map[dualstack.Mode]want{
			dualstack.Auto: {v6: true, addrs: []string{"::1"}, mode: dualstack.Separate},
		}},
	}
	for _, tc := range tests {
		for _, mode := range modes {
			t.Run(fmt.Sprintf("%s/%v", tc.name, mode), func(t *testing.T) {
				t.Parallel()
				w, ok := tc.want[mode]
				if !ok {
					w = tc.want[dualstack.Auto]
					if mode == dualstack.Single && w.mode == dualstack.Separate {
						w = want{err: true}
					}
				}
				if w.mode == 0 {
					w.mode = mode
					if mode == dualstack.Auto {
						w.mode = dualstack.Separate
					}
				}
				lc := dualstack.ListenConfig{Mode: mode}
				ln, err := lc.Listen(context.Background(), tc.network, tc.address)
				if w.err {
					var oe *net.OpError
					require.ErrorAs(t, err, &oe)
					assert.Equal(t, "listen", oe.Op)
					assert.Contains(t, err.Error(), "Single mode serves")
					assert.Nil(t, ln)
					return
				}
				require.NoError(t, err)
				ts := serveTokens(t, ln)

				assert.Equal(t, w.mode, ln.Mode())
				var hosts []string
				port := portOf(t, ln.Addr())
				assert.NotZero(t, port)
				for _, a := range ln.Addrs() {
					hosts = append(hosts, a.(*net.TCPAddr).IP.String())
					assert.Equal(t, port, portOf(t, a), "every socket on one port")
				}
				assert.Equal(t, w.addrs, hosts)
				// Addr is what net.Listen would report: [::]:P for a
				// wildcard on both families, else the first of Addrs.
				wantAddr := ln.Addrs()[0]
				if len(hosts) == 2 && hosts[0] == "0.0.0.0" {
					wantAddr = ln.Addrs()[1]
				}
				assert.Equal(t, wantAddr, ln.Addr())

				assert.Equal(t, w.v4, ts.reaches("tcp", hostPort(t, "127.0.0.1", ln.Addr())), "reached from 127.0.0.1")
				assert.Equal(t, w.v6, ts.reaches("tcp", hostPort(t, "::1", ln.Addr())), "reached from ::1")
				// Dialing Addr reaches the listener wherever dialing a
				// net.Listen listener's wildcard address does.
				if dialsWildcard(t, ln.Addr()) {
					assert.True(t, ts.reaches("tcp", ln.Addr().String()), "reached through Addr %v", ln.Addr())
				}
			})
		}
	}
}

// TestListenHostName binds every address a name resolves to, on one port.
func TestListenHostName(t *testing.T) {
	t.Parallel()
	lookup := func(_ context.Context, network, host string) ([]netip.Addr, error) {
		if host != "dualstack.test" {
			return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
		}
		all := []netip.Addr{
			netip.MustParseAddr("::1"),
			netip.MustParseAddr("127.0.0.1"),
			netip.MustParseAddr("::ffff:127.0.0.1"), // the same IPv4 address again
		}
		var out []netip.Addr
		for _, a := range all {
			if network == "ip" || (network == "ip4") == a.Unmap().Is4() {
				out = append(out, a)
			}
		}
		return out, nil
	}
	tests := []struct {
		name    string
		network string
		mode    dualstack.Mode
		addrs   []string
		v4, v6  bool
		err     error
	}{
		// Every address, IPv4 first, duplicates dropped.
		{"tcp", "tcp", dualstack.Auto, []string{"127.0.0.1", "::1"}, true, true, nil},
		// Only the family asked for.
		{"tcp4", "tcp4", dualstack.Auto, []string{"127.0.0.1"}, true, false, nil},
		{"tcp6", "tcp6", dualstack.Separate, []string{"::1"}, false, true, nil},
		// Single cannot hold two specific addresses on one socket.
		{"Single with two addresses", "tcp", dualstack.Single, nil, false, false, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			lc := dualstack.ListenConfig{Mode: tc.mode}
			ln, err := dualstack.ListenResolving(context.Background(), &lc, lookup, tc.network, "dualstack.test:0")
			if tc.addrs == nil {
				var oe *net.OpError
				require.ErrorAs(t, err, &oe)
				assert.Contains(t, err.Error(), "Single mode")
				return
			}
			require.NoError(t, err)
			ts := serveTokens(t, ln)
			var hosts []string
			for _, a := range ln.Addrs() {
				hosts = append(hosts, a.(*net.TCPAddr).IP.String())
				assert.Equal(t, portOf(t, ln.Addr()), portOf(t, a))
			}
			assert.Equal(t, tc.addrs, hosts)
			assert.Equal(t, tc.v4, ts.reaches("tcp", hostPort(t, "127.0.0.1", ln.Addr())))
			assert.Equal(t, tc.v6, ts.reaches("tcp", hostPort(t, "::1", ln.Addr())))
		})
	}

	// A wildcard and another address of its family cannot share a port:
	// said at once, with no attempt made.
	t.Run("wildcard and specific", func(t *testing.T) {
		t.Parallel()
		both := func(context.Context, string, string) ([]netip.Addr, error) {
			return []netip.Addr{netip.IPv4Unspecified(), netip.MustParseAddr("127.0.0.1")}, nil
		}
		_, err := dualstack.ListenResolving(context.Background(), &dualstack.ListenConfig{}, both, "tcp", "both.test:0")
		var oe *net.OpError
		require.ErrorAs(t, err, &oe)
		assert.Contains(t, err.Error(), "both.test resolves to 0.0.0.0 and 127.0.0.1")
		assert.Contains(t, err.Error(), "cannot share a port")
		assert.NotContains(t, err.Error(), "attempt")
	})

	t.Run("resolution error", func(t *testing.T) {
		t.Parallel()
		var lc dualstack.ListenConfig
		_, err := dualstack.ListenResolving(context.Background(), &lc, lookup, "tcp", "nowhere.test:0")
		var oe *net.OpError
		require.ErrorAs(t, err, &oe)
		var dnsErr *net.DNSError
		require.ErrorAs(t, err, &dnsErr, "the resolver's error is passed on")
		assert.True(t, dnsErr.IsNotFound)
	})
}

// TestExplicitPortHeld: a port whose IPv4 or IPv6 half another socket
// holds cannot be listened on, and the failure leaves nothing open.
func TestExplicitPortHeld(t *testing.T) {
	holders := []struct {
		name    string
		network string
		address string
	}{
		{"IPv4 wildcard", "tcp4", "0.0.0.0:0"},
		{"IPv4 loopback", "tcp4", "127.0.0.1:0"},
		{"IPv6-only wildcard", "tcp6", "[::]:0"},
	}
	for _, h := range holders {
		for _, mode := range modes {
			t.Run(fmt.Sprintf("%s/%v", h.name, mode), func(t *testing.T) {
				holder, err := net.Listen(h.network, h.address)
				require.NoError(t, err)
				defer holder.Close()
				port := portOf(t, holder.Addr())

				checkFDs := requireNoFDLeak(t)
				lc := dualstack.ListenConfig{Mode: mode}
				ln, err := lc.Listen(context.Background(), "tcp", fmt.Sprintf(":%d", port))
				require.Error(t, err)
				assert.Nil(t, ln)
				require.ErrorIs(t, err, syscall.EADDRINUSE)
				var oe *net.OpError
				require.ErrorAs(t, err, &oe)
				assert.Equal(t, "listen", oe.Op)
				assert.Equal(t, "tcp", oe.Net)
				require.NotNil(t, oe.Addr)
				assert.Equal(t, port, portOf(t, oe.Addr))
				assert.Regexp(t, `(IPv4|IPv6|dual-stack) (socket|port probe|loopback guard): bind: address already in use`, err.Error())
				checkFDs()
			})
		}
	}
}

// TestEphemeralSkipsIPv4HeldPorts holds most of a narrowed ephemeral range
// on IPv4 and listens on :0 hundreds of times: Separate never returns a port
// held on IPv4, where a plain IPv6-only bind, the naive way to get a
// Separate pair, lands on such ports.
func TestEphemeralSkipsIPv4HeldPorts(t *testing.T) {
	const lo, hi, held, binds = 40000, 40499, 400, 300
	ownKernel(t)
	ownPortRange(t, lo, hi)

	// On FreeBSD net.Listen's own SO_REUSEADDR lets a 127.0.0.1:0 holder
	// land on a port a 0.0.0.0 holder has: fewer ports than holders.
	heldPorts := map[int]bool{}
	for i := range held {
		// A mix of specific and wildcard IPv4 holders.
		addr := "127.0.0.1:0"
		if i%2 == 1 {
			addr = "0.0.0.0:0"
		}
		h, err := net.Listen("tcp4", addr)
		require.NoError(t, err)
		defer h.Close()
		heldPorts[portOf(t, h.Addr())] = true
	}
	require.Greater(t, len(heldPorts), held/2)

	// The naive way lands on IPv4-held ports: the test can see the bug.
	naive := 0
	for range binds {
		ln, err := net.Listen("tcp6", "[::]:0")
		require.NoError(t, err)
		if heldPorts[portOf(t, ln.Addr())] {
			naive++
		}
		ln.Close()
	}
	assert.Positive(t, naive, "an IPv6-only ephemeral bind should land on IPv4-held ports")
	t.Logf("naive IPv6-only [::]:0 landed on an IPv4-held port %d times in %d", naive, binds)

	for _, mode := range []dualstack.Mode{dualstack.Separate, dualstack.Single} {
		lc := dualstack.ListenConfig{Mode: mode}
		for i := range binds {
			ln, err := lc.Listen(context.Background(), "tcp", ":0")
			require.NoError(t, err)
			port := portOf(t, ln.Addr())
			require.False(t, heldPorts[port], "%v: bind %d returned port %d, held on IPv4", mode, i, port)
			require.GreaterOrEqual(t, port, lo)
			require.LessOrEqual(t, port, hi)
			if i%50 == 0 {
				ts := serveTokens(t, ln)
				require.True(t, ts.reaches("tcp", hostPort(t, "127.0.0.1", ln.Addr())))
				require.True(t, ts.reaches("tcp", hostPort(t, "::1", ln.Addr())))
			}
			ln.Close()
		}
	}
}

// TestCloseUnblocksAccept: Close wakes a blocked Accept with net.ErrClosed,
// can be called twice, and leaves no goroutine behind.
func TestCloseUnblocksAccept(t *testing.T) {
	type variant struct {
		name    string
		lc      dualstack.ListenConfig
		address string
		listen  func(*dualstack.ListenConfig, context.Context, string, string) (*dualstack.Listener, error)
	}
	variants := []variant{{"Single", dualstack.ListenConfig{Mode: dualstack.Single}, ":0", (*dualstack.ListenConfig).Listen}}
	for _, impl := range acceptImpls {
		variants = append(variants, variant{"Separate/" + impl.name, dualstack.ListenConfig{Mode: dualstack.Separate}, "localhost:0", impl.listen})
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			checkFDs := requireNoFDLeak(t)
			ln, err := v.listen(&v.lc, context.Background(), "tcp", v.address)
			require.NoError(t, err)

			errc := make(chan error, 3)
			for range 3 {
				go func() {
					_, err := ln.Accept()
					errc <- err
				}()
			}
			time.Sleep(20 * time.Millisecond) // let the Accepts block
			require.NoError(t, ln.Close())
			for range 3 {
				select {
				case err := <-errc:
					require.ErrorIs(t, err, net.ErrClosed)
					var oe *net.OpError
					require.ErrorAs(t, err, &oe)
					assert.Equal(t, "accept", oe.Op)
				case <-time.After(ioTimeout):
					t.Fatal("Close did not unblock Accept")
				}
			}
			_, err = ln.Accept()
			require.ErrorIs(t, err, net.ErrClosed, "Accept after Close")
			require.ErrorIs(t, ln.Close(), net.ErrClosed, "second Close")
			require.Error(t, ln.SetDeadline(time.Now()), "SetDeadline after Close")
			requireNoListenerGoroutines(t)
			checkFDs()
		})
	}
}

// TestCloseClosesPendingConns: connections the listener took from the kernel
// but never handed out are closed by Close, so their clients see the end.
func TestCloseClosesPendingConns(t *testing.T) {
	for _, impl := range acceptImpls {
		t.Run(impl.name, func(t *testing.T) { testCloseClosesPendingConns(t, impl.listen) })
	}
}

func testCloseClosesPendingConns(t *testing.T, listen func(*dualstack.ListenConfig, context.Context, string, string) (*dualstack.Listener, error)) {
	checkFDs := requireNoFDLeak(t)
	ln, err := listen(&dualstack.ListenConfig{}, context.Background(), "tcp", "localhost:0")
	require.NoError(t, err)
	require.Equal(t, dualstack.Separate, ln.Mode())

	// One Accept starts the portable acceptor's loops; then each loop
	// takes more connections that nobody accepts. The host's acceptor
	// leaves them to the kernel.
	first, err := net.Dial("tcp", hostPort(t, "127.0.0.1", ln.Addr()))
	require.NoError(t, err)
	defer first.Close()
	c, err := ln.Accept()
	require.NoError(t, err)
	c.Close()

	var clients []net.Conn
	for _, host := range []string{"127.0.0.1", "::1", "127.0.0.1", "::1"} {
		c, err := net.Dial("tcp", hostPort(t, host, ln.Addr()))
		require.NoError(t, err)
		defer c.Close()
		clients = append(clients, c)
	}
	time.Sleep(20 * time.Millisecond) // let the loops take theirs
	require.NoError(t, ln.Close())
	for _, c := range clients {
		c.SetReadDeadline(time.Now().Add(ioTimeout))
		_, err := c.Read(make([]byte, 1))
		require.Error(t, err)
		assert.False(t, errors.Is(err, os.ErrDeadlineExceeded), "%v: connection still open after Close: %v", c.RemoteAddr(), err)
	}
	for _, c := range clients {
		c.Close()
	}
	first.Close()
	requireNoListenerGoroutines(t)
	checkFDs()
}

// TestSetDeadline: Accept past its deadline fails with a timeout, a blocked
// Accept wakes when the deadline passes or is moved into the past, and the
// zero time removes the deadline.
func TestSetDeadline(t *testing.T) {
	t.Parallel()
	type variant struct {
		name   string
		mode   dualstack.Mode
		listen func(*dualstack.ListenConfig, context.Context, string, string) (*dualstack.Listener, error)
	}
	variants := []variant{{"Single", dualstack.Single, (*dualstack.ListenConfig).Listen}}
	for _, impl := range acceptImpls {
		variants = append(variants, variant{"Separate/" + impl.name, dualstack.Separate, impl.listen})
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			lc := dualstack.ListenConfig{Mode: v.mode}
			ln, err := v.listen(&lc, context.Background(), "tcp", ":0")
			require.NoError(t, err)
			defer ln.Close()

			isTimeout := func(err error) {
				t.Helper()
				require.Error(t, err)
				var ne net.Error
				require.ErrorAs(t, err, &ne)
				assert.True(t, ne.Timeout(), "Timeout() of %v", err)
				require.ErrorIs(t, err, os.ErrDeadlineExceeded)
				var oe *net.OpError
				require.ErrorAs(t, err, &oe)
				assert.Equal(t, "accept", oe.Op)
			}

			// A deadline that passes while Accept waits.
			require.NoError(t, ln.SetDeadline(time.Now().Add(30*time.Millisecond)))
			start := time.Now()
			_, err = ln.Accept()
			isTimeout(err)
			assert.GreaterOrEqual(t, time.Since(start), 25*time.Millisecond)

			// A deadline already past fails at once, even with a
			// connection waiting.
			c, err := net.Dial("tcp", hostPort(t, "127.0.0.1", ln.Addr()))
			require.NoError(t, err)
			defer c.Close()
			_, err = ln.Accept()
			isTimeout(err)

			// A blocked Accept wakes when the deadline moves into the past.
			require.NoError(t, ln.SetDeadline(time.Time{}))
			got, err := ln.Accept() // the waiting connection
			require.NoError(t, err)
			got.Close()
			errc := make(chan error, 1)
			go func() {
				_, err := ln.Accept()
				errc <- err
			}()
			time.Sleep(20 * time.Millisecond)
			require.NoError(t, ln.SetDeadline(time.Now().Add(-time.Second)))
			select {
			case err := <-errc:
				isTimeout(err)
			case <-time.After(ioTimeout):
				t.Fatal("moving the deadline into the past did not wake Accept")
			}

			// A deadline moved later before it passes is the later one.
			require.NoError(t, ln.SetDeadline(time.Now().Add(20*time.Millisecond)))
			require.NoError(t, ln.SetDeadline(time.Now().Add(time.Hour)))
			require.NoError(t, ln.SetDeadline(time.Time{}))
			go func() {
				time.Sleep(60 * time.Millisecond)
				if c, err := net.Dial("tcp", hostPort(t, "::1", ln.Addr())); err == nil {
					defer c.Close()
					io.Copy(io.Discard, c)
				}
			}()
			got, err = ln.Accept()
			require.NoError(t, err, "no deadline once cleared")
			got.Close()
		})
	}
}

// TestAcceptFairness: with a backlog of IPv4 connections, an IPv6 one is
// still accepted at once, and under load from both families Accept
// alternates between them. (The host's acceptor; the portable one's order
// follows the Go scheduler, see TestPortableAcceptServesBoth.)
func TestAcceptFairness(t *testing.T) {
	t.Parallel()
	ln, err := (&dualstack.ListenConfig{Mode: dualstack.Separate}).Listen(context.Background(), "tcp", "localhost:0")
	require.NoError(t, err)
	defer ln.Close()

	dial := func(host string, n int) []net.Conn {
		var cs []net.Conn
		for range n {
			c, err := net.Dial("tcp", hostPort(t, host, ln.Addr()))
			require.NoError(t, err)
			t.Cleanup(func() { c.Close() })
			cs = append(cs, c)
		}
		return cs
	}
	family := func(c net.Conn) string {
		if c.RemoteAddr().(*net.TCPAddr).IP.To4() != nil {
			return "v4"
		}
		return "v6"
	}

	dial("127.0.0.1", 50)
	dial("::1", 1)
	seen := []string{}
	for len(seen) < 3 {
		c, err := ln.Accept()
		require.NoError(t, err)
		seen = append(seen, family(c))
		c.Close()
		if family(c) == "v6" {
			break
		}
	}
	assert.Contains(t, seen, "v6", "the IPv6 connection waited behind IPv4 ones: %v", seen)
	for range 50 - len(seen) + 1 { // drain the rest
		c, err := ln.Accept()
		require.NoError(t, err)
		c.Close()
	}

	dial("127.0.0.1", 100)
	dial("::1", 100)
	count := map[string]int{}
	var seq []bool
	for range 100 {
		c, err := ln.Accept()
		require.NoError(t, err)
		count[family(c)]++
		seq = append(seq, family(c) == "v4")
		c.Close()
	}
	assert.Equal(t, map[string]int{"v4": 50, "v6": 50}, count, "Accept alternates between families with connections waiting")
	assert.LessOrEqual(t, longestRun(seq), 2, "the longest run of one family: %v", seq)
}

// longestRun returns the length of the longest run of equal values.
func longestRun(seq []bool) int {
	longest, run := 0, 0
	for i, v := range seq {
		if i > 0 && v == seq[i-1] {
			run++
		} else {
			run = 1
		}
		longest = max(longest, run)
	}
	return longest
}

// TestPortableAcceptServesBoth: the portable acceptor serves a family that
// the other floods, once the scheduler runs its goroutine.
func TestPortableAcceptServesBoth(t *testing.T) {
	t.Parallel()
	ln, err := dualstack.ListenPortableAccept(&dualstack.ListenConfig{}, context.Background(), "tcp", "localhost:0")
	require.NoError(t, err)
	ts := serveTokens(t, ln)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer func() {
		close(stop)
		wg.Wait()
	}()
	wg.Add(1)
	go func() { // flood IPv4
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			ts.exchange("tcp", hostPort(t, "127.0.0.1", ln.Addr()))
		}
	}()
	for range 20 {
		_, err := ts.exchange("tcp", hostPort(t, "::1", ln.Addr()))
		require.NoError(t, err, "IPv6 starved by an IPv4 flood")
	}
}

// TestTemporaryErrorKeepsAccepting runs out of descriptors: Accept returns
// the original temporary *net.OpError (EMFILE), and both families are
// served again once descriptors are free.
func TestTemporaryErrorKeepsAccepting(t *testing.T) {
	for _, impl := range acceptImpls {
		t.Run(impl.name, func(t *testing.T) { testTemporaryErrorKeepsAccepting(t, impl.listen) })
	}
}

func testTemporaryErrorKeepsAccepting(t *testing.T, listen func(*dualstack.ListenConfig, context.Context, string, string) (*dualstack.Listener, error)) {
	ln, err := listen(&dualstack.ListenConfig{Mode: dualstack.Separate}, context.Background(), "tcp", "localhost:0")
	require.NoError(t, err)
	defer ln.Close()
	v4, err := net.Dial("tcp", hostPort(t, "127.0.0.1", ln.Addr()))
	require.NoError(t, err)
	defer v4.Close()
	v6, err := net.Dial("tcp", hostPort(t, "::1", ln.Addr()))
	require.NoError(t, err)
	defer v6.Close()

	// Lower the limit and fill every free descriptor below it.
	var saved unix.Rlimit
	require.NoError(t, unix.Getrlimit(unix.RLIMIT_NOFILE, &saved))
	lowered := saved
	setLimit(&lowered.Cur, openFDs(t)+8)
	require.NoError(t, unix.Setrlimit(unix.RLIMIT_NOFILE, &lowered))
	var fillers []*os.File
	release := func() {
		for _, f := range fillers {
			f.Close()
		}
		fillers = nil
		unix.Setrlimit(unix.RLIMIT_NOFILE, &saved)
	}
	defer release()
	for {
		f, err := os.Open(os.DevNull)
		if err != nil {
			require.ErrorIs(t, err, syscall.EMFILE)
			break
		}
		fillers = append(fillers, f)
	}

	ln.SetDeadline(time.Now().Add(ioTimeout))
	_, err = ln.Accept()
	require.ErrorIs(t, err, syscall.EMFILE)
	var oe *net.OpError
	require.ErrorAs(t, err, &oe)
	assert.Equal(t, "accept", oe.Op)
	assert.True(t, oe.Temporary(), "EMFILE is temporary, so http.Server backs off") //nolint:staticcheck // http.Server still asks.
	var ne net.Error
	require.ErrorAs(t, err, &ne, "the error is a net.Error for callers' back-off")

	release()
	got := map[string]bool{}
	for range 6 {
		c, err := ln.Accept()
		if err != nil {
			require.ErrorIs(t, err, syscall.EMFILE, "only stale EMFILE errors may remain")
			continue
		}
		got[c.RemoteAddr().(*net.TCPAddr).IP.String()] = true
		c.Close()
		if len(got) == 2 {
			break
		}
	}
	assert.Equal(t, map[string]bool{"127.0.0.1": true, "::1": true}, got, "both families accepted after EMFILE")
}

// TestHTTPServer serves HTTP on a Separate listener to both families; the
// server sees each client in its own family.
func TestHTTPServer(t *testing.T) {
	t.Parallel()
	for _, impl := range acceptImpls {
		t.Run(impl.name, func(t *testing.T) {
			t.Parallel()
			testHTTPServer(t, impl.listen)
		})
	}
}

func testHTTPServer(t *testing.T, listen func(*dualstack.ListenConfig, context.Context, string, string) (*dualstack.Listener, error)) {
	ln, err := listen(&dualstack.ListenConfig{Mode: dualstack.Separate}, context.Background(), "tcp", ":0")
	require.NoError(t, err)
	secret := fmt.Sprint(time.Now().UnixNano())
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s", secret, r.RemoteAddr)
	}), ReadHeaderTimeout: ioTimeout}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	defer func() {
		require.NoError(t, srv.Close())
		require.ErrorIs(t, <-done, http.ErrServerClosed)
	}()

	client := &http.Client{Timeout: ioTimeout, Transport: &http.Transport{DisableKeepAlives: true}}
	for _, host := range []string{"127.0.0.1", "::1"} {
		resp, err := client.Get("http://" + hostPort(t, host, ln.Addr()) + "/")
		require.NoError(t, err, host)
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		f := strings.Fields(string(body))
		require.Len(t, f, 2)
		assert.Equal(t, secret, f[0], "answered by this server")
		peer := netip.MustParseAddrPort(f[1])
		assert.Equal(t, host, peer.Addr().String(), "the server sees the client in its own family")
	}
}

// TestListenErrors: bad input yields a *net.OpError with a clear cause,
// never a panic or an open descriptor.
func TestListenErrors(t *testing.T) {
	tests := []struct {
		name    string
		lc      dualstack.ListenConfig
		network string
		address string
		check   func(t *testing.T, err error)
	}{
		// Networks other than tcp, tcp4 and tcp6.
		{"unknown network", dualstack.ListenConfig{}, "tcp5", ":0", isUnknownNetwork},
		{"udp to Listen", dualstack.ListenConfig{}, "udp", ":0", isUnknownNetwork},
		{"empty network", dualstack.ListenConfig{}, "", ":0", isUnknownNetwork},
		// Malformed addresses, as net.SplitHostPort reports them.
		{"missing port", dualstack.ListenConfig{}, "tcp", "localhost", isAddrError("missing port")},
		{"unclosed bracket", dualstack.ListenConfig{}, "tcp", "[::1:0", isAddrError("missing ']'")},
		{"too many colons", dualstack.ListenConfig{}, "tcp", "::1:0", isAddrError("too many colons")},
		// Ports out of range or unknown.
		{"port too big", dualstack.ListenConfig{}, "tcp", ":65536", isAddrError("invalid port")},
		{"negative port", dualstack.ListenConfig{}, "tcp", ":-1", isAddrError("invalid port")},
		{"unknown service", dualstack.ListenConfig{}, "tcp", ":no-such-service-xyz", isCause[*net.DNSError]},
		// A literal of the other family.
		{"tcp4 with IPv6 literal", dualstack.ListenConfig{}, "tcp4", "[::1]:0", isAddrError("no suitable address")},
		{"tcp6 with IPv4 literal", dualstack.ListenConfig{}, "tcp6", "127.0.0.1:0", isAddrError("no suitable address")},
		{"tcp6 with IPv4-mapped literal", dualstack.ListenConfig{}, "tcp6", "[::ffff:127.0.0.1]:0", isAddrError("no suitable address")},
		// Configuration errors.
		{"negative Attempts", dualstack.ListenConfig{Attempts: -1}, "tcp", ":0", hasText("negative Attempts")},
		{"unknown Mode", dualstack.ListenConfig{Mode: 7}, "tcp", ":0", hasText("unknown Mode")},
		{"Single on localhost", dualstack.ListenConfig{Mode: dualstack.Single}, "tcp", "localhost:0", hasText("Single mode")},
		// An address no interface has.
		{"unassigned address", dualstack.ListenConfig{}, "tcp", "192.0.2.123:0", isErrno(syscall.EADDRNOTAVAIL)},
		// An unknown zone is no zone, as for net.Listen, and a link-local
		// address needs one.
		{"unknown zone", dualstack.ListenConfig{}, "tcp", "[fe80::1%nosuchif0]:0", isCause[syscall.Errno]},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkFDs := requireNoFDLeak(t)
			var ln *dualstack.Listener
			var err error
			require.NotPanics(t, func() { ln, err = tc.lc.Listen(context.Background(), tc.network, tc.address) })
			require.Error(t, err)
			assert.Nil(t, ln)
			var oe *net.OpError
			require.ErrorAs(t, err, &oe)
			assert.Equal(t, "listen", oe.Op)
			assert.Equal(t, tc.network, oe.Net)
			tc.check(t, err)
			checkFDs()
		})
	}
}

func isUnknownNetwork(t *testing.T, err error) {
	t.Helper()
	var une net.UnknownNetworkError
	require.ErrorAs(t, err, &une)
}

func isAddrError(text string) func(*testing.T, error) {
	return func(t *testing.T, err error) {
		t.Helper()
		var ae *net.AddrError
		require.ErrorAs(t, err, &ae)
		assert.Contains(t, ae.Err, text)
	}
}

func isCause[E error](t *testing.T, err error) {
	t.Helper()
	var e E
	require.ErrorAs(t, err, &e)
}

func isErrno(errno syscall.Errno) func(*testing.T, error) {
	return func(t *testing.T, err error) {
		t.Helper()
		require.ErrorIs(t, err, errno)
	}
}

func hasText(text string) func(*testing.T, error) {
	return func(t *testing.T, err error) {
		t.Helper()
		assert.Contains(t, err.Error(), text)
	}
}

// TestControl: the user's Control runs on every socket the listener holds,
// after our options, with the network and address being bound; its error
// fails Listen and leaves nothing open.
func TestControl(t *testing.T) {
	t.Run("sees our options", func(t *testing.T) {
		for _, mode := range []dualstack.Mode{dualstack.Separate, dualstack.Single} {
			var mu sync.Mutex
			type call struct {
				network, address string
				v6only           int
			}
			var calls []call
			lc := dualstack.ListenConfig{Mode: mode, Control: func(network, address string, c syscall.RawConn) error {
				cl := call{network: network, address: address, v6only: -1}
				err := c.Control(func(fd uintptr) {
					if network == "tcp6" {
						cl.v6only, _ = unix.GetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_V6ONLY)
					}
				})
				mu.Lock()
				calls = append(calls, cl)
				mu.Unlock()
				return err
			}}
			ln, err := lc.Listen(context.Background(), "tcp", ":0")
			require.NoError(t, err)
			port := portOf(t, ln.Addr())
			ln.Close()
			at := func(host string) string { return net.JoinHostPort(host, fmt.Sprint(port)) }
			// The socket that picks the port sees port 0; on macOS and
			// FreeBSD the loopback guards come last.
			var want []call
			switch {
			case runtime.GOOS == "linux" && mode == dualstack.Separate:
				want = []call{{"tcp4", at("0.0.0.0"), -1}, {"tcp6", at("::"), 1}}
			case runtime.GOOS == "linux":
				want = []call{{"tcp6", "[::]:0", 0}}
			case mode == dualstack.Separate:
				want = []call{{"tcp4", "0.0.0.0:0", -1}, {"tcp6", at("::"), 1}, {"tcp4", at("127.0.0.1"), -1}, {"tcp6", at("::1"), 1}}
			default:
				want = []call{{"tcp6", at("::"), 0}, {"tcp4", at("127.0.0.1"), -1}, {"tcp6", at("::1"), 1}}
			}
			assert.Equal(t, want, calls, mode)
		}
	})
	t.Run("error fails Listen", func(t *testing.T) {
		errNo := errors.New("control says no")
		for _, mode := range []dualstack.Mode{dualstack.Separate, dualstack.Single} {
			n := 0
			lc := dualstack.ListenConfig{Mode: mode, Control: func(network, _ string, _ syscall.RawConn) error {
				if network == "tcp6" {
					n++
					return errNo
				}
				return nil
			}}
			checkFDs := requireNoFDLeak(t)
			_, err := lc.Listen(context.Background(), "tcp", ":0")
			require.ErrorIs(t, err, errNo)
			var oe *net.OpError
			require.ErrorAs(t, err, &oe)
			assert.Equal(t, 1, n, "Control error is not retried")
			checkFDs()
		}
	})
}

// TestKeepAlive: accepted connections get the keep-alive settings of the
// ListenConfig, as from net.ListenConfig, on both families.
func TestKeepAlive(t *testing.T) {
	t.Parallel()
	type ka struct{ on, idle, intvl, cnt int }
	tests := []struct {
		name string
		lc   dualstack.ListenConfig
		want ka
	}{
		// The zero value: on, with Go's defaults (15s, 15s, 9).
		{"default", dualstack.ListenConfig{}, ka{1, 15, 15, 9}},
		// Negative KeepAlive: off.
		{"disabled", dualstack.ListenConfig{KeepAlive: -1}, ka{on: 0}},
		// A period: the idle time; the rest default.
		{"period", dualstack.ListenConfig{KeepAlive: 42 * time.Second}, ka{1, 42, 15, 9}},
		// A full configuration wins over KeepAlive.
		{"config", dualstack.ListenConfig{KeepAlive: -1, KeepAliveConfig: net.KeepAliveConfig{
			Enable: true, Idle: 33 * time.Second, Interval: 7 * time.Second, Count: 3}}, ka{1, 33, 7, 3}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.lc.Mode = dualstack.Separate
			ln, err := tc.lc.Listen(context.Background(), "tcp", "localhost:0")
			require.NoError(t, err)
			defer ln.Close()
			for _, host := range []string{"127.0.0.1", "::1"} {
				c, err := net.Dial("tcp", hostPort(t, host, ln.Addr()))
				require.NoError(t, err)
				defer c.Close()
				got, err := ln.Accept()
				require.NoError(t, err)
				defer got.Close()
				sc, err := got.(syscall.Conn).SyscallConn()
				require.NoError(t, err)
				var k ka
				sc.Control(func(fd uintptr) {
					// The BSDs answer with the option's flag, not 1.
					if on, _ := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_KEEPALIVE); on != 0 {
						k.on = 1
					}
					if k.on == 1 && tcpKeepIdle >= 0 {
						k.idle, _ = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, tcpKeepIdle)
						k.intvl, _ = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, tcpKeepIntvl)
						k.cnt, _ = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, tcpKeepCnt)
					}
				})
				assert.Equal(t, tc.want, k, host)
			}
		})
	}
}

// TestModeString names the modes.
func TestModeString(t *testing.T) {
	t.Parallel()
	assert.Equal(t, "Auto", dualstack.Auto.String())
	assert.Equal(t, "Separate", dualstack.Separate.String())
	assert.Equal(t, "Single", dualstack.Single.String())
	assert.Equal(t, "Mode(7)", dualstack.Mode(7).String())
}

// TestZeroListener: the methods of a Listener that Listen did not return
// fail with EINVAL, as net's zero listener's do, and never panic.
func TestZeroListener(t *testing.T) {
	t.Parallel()
	for name, ln := range map[string]*dualstack.Listener{"new": new(dualstack.Listener), "nil": nil} {
		t.Run(name, func(t *testing.T) {
			require.NotPanics(t, func() {
				_, err := ln.Accept()
				require.ErrorIs(t, err, syscall.EINVAL)
				var oe *net.OpError
				require.ErrorAs(t, err, &oe)
				assert.Equal(t, "accept", oe.Op)
				require.ErrorIs(t, ln.Close(), syscall.EINVAL)
				require.ErrorIs(t, ln.SetDeadline(time.Now()), syscall.EINVAL)
				assert.Nil(t, ln.Addr())
				assert.Empty(t, ln.Addrs())
				assert.Equal(t, dualstack.Auto, ln.Mode())
			})
		})
	}
}
