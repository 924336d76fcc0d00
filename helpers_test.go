//go:build unix

package dualstack_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dualstack-go/dualstack"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// ioTimeout bounds every blocking step of a test.
const ioTimeout = 5 * time.Second

// tokenServer answers each connection of a listener with a secret of its
// own, so that a client can tell this listener from another process on the
// same port.
type tokenServer struct {
	secret string
	done   chan struct{}
}

// serveTokens serves ln until the test ends, then closes it.
func serveTokens(t testing.TB, ln net.Listener) *tokenServer {
	ts := &tokenServer{secret: rand.Text(), done: make(chan struct{})}
	go ts.serve(ln)
	t.Cleanup(func() {
		ln.Close()
		<-ts.done
	})
	return ts
}

func (ts *tokenServer) serve(ln net.Listener) {
	defer close(ts.done)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && !errors.Is(err, net.ErrClosed) && !ne.Timeout() {
				continue // a temporary error: keep accepting
			}
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			c.SetDeadline(time.Now().Add(ioTimeout))
			token, err := bufio.NewReader(c).ReadString('\n')
			if err != nil {
				return
			}
			fmt.Fprintf(c, "%s %s %s\n", ts.secret, strings.TrimSpace(token), c.RemoteAddr())
		}()
	}
}

// exchange dials address, sends a fresh token and returns the peer address
// the server saw. It fails unless the answer carries this server's secret
// and the token.
func (ts *tokenServer) exchange(network, address string) (peer string, err error) {
	c, err := net.DialTimeout(network, address, ioTimeout)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(ioTimeout))
	token := rand.Text()
	if _, err := fmt.Fprintf(c, "%s\n", token); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("no answer from %s: %w", address, err)
	}
	f := strings.Fields(line)
	if len(f) != 3 || f[0] != ts.secret || f[1] != token {
		return "", fmt.Errorf("%s answered %q: not this listener", address, line)
	}
	return f[2], nil
}

// reaches reports whether a token exchange with ts over address succeeds.
func (ts *tokenServer) reaches(network, address string) bool {
	_, err := ts.exchange(network, address)
	return err == nil
}

// acceptImpls are the ways a listener on several sockets accepts: the
// host's (epoll on Linux) and the portable one that other systems use.
var acceptImpls = []struct {
	name   string
	listen func(*dualstack.ListenConfig, context.Context, string, string) (*dualstack.Listener, error)
}{
	{"host", (*dualstack.ListenConfig).Listen},
	{"portable", dualstack.ListenPortableAccept},
}

// startPoller makes the runtime start its network poller, whose own
// descriptors (a kqueue on the BSDs) stay open for good, so that they are
// not counted as a leak of the first test that uses the network.
var startPoller = sync.OnceFunc(func() {
	if ln, err := net.Listen("tcp", "127.0.0.1:0"); err == nil {
		ln.Close()
	}
})

// openFDs counts the descriptors this process has open.
func openFDs(t testing.TB) int {
	t.Helper()
	n, err := countFDs()
	require.NoError(t, err)
	return n
}

// countFDs counts the descriptors this process has open: the entries of
// /proc/self/fd on Linux, elsewhere the descriptors below the limit (at
// most 4096) that fcntl(F_GETFD) finds open.
func countFDs() (int, error) {
	if runtime.GOOS == "linux" {
		ents, err := os.ReadDir("/proc/self/fd")
		return len(ents), err
	}
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	n := 0
	for fd := range min(lim.Cur, 4096) {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err == nil {
			n++
		}
	}
	return n, nil
}

// loopbackName returns the name of the loopback interface: lo on Linux,
// lo0 on the BSDs.
func loopbackName(t testing.TB) string {
	t.Helper()
	ifs, err := net.Interfaces()
	require.NoError(t, err)
	for _, ifi := range ifs {
		if ifi.Flags&net.FlagLoopback != 0 {
			return ifi.Name
		}
	}
	t.Fatal("no loopback interface")
	return ""
}

// requireNoFDLeak fails the test if descriptors stay open that were not
// open at the call; it gives closing goroutines a moment.
func requireNoFDLeak(t testing.TB) func() {
	t.Helper()
	startPoller()
	before := openFDs(t)
	return func() {
		t.Helper()
		require.Eventually(t, func() bool { return openFDs(t) <= before },
			ioTimeout, 10*time.Millisecond, "descriptors left open (was %d)", before)
	}
}

// listenerGoroutines counts the goroutines this package starts: the
// sources of the portable acceptor and reader.
func listenerGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "dualstack.(*fanIn[") {
			count++
		}
	}
	return count
}

// requireNoListenerGoroutines fails unless this package's goroutines are
// gone. A goroutine that has signalled its end may still be finishing its
// return for a moment, so it polls briefly.
func requireNoListenerGoroutines(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	for listenerGoroutines() > 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	require.Zero(t, listenerGoroutines(), "goroutines outlive Close")
}

// portOf returns the port of a TCP or UDP address.
func portOf(t testing.TB, a net.Addr) int {
	t.Helper()
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.Port
	case *net.UDPAddr:
		return a.Port
	}
	t.Fatalf("not a TCP or UDP address: %T %v", a, a)
	return 0
}

// hostPort joins host with the listener's port.
func hostPort(t testing.TB, host string, a net.Addr) string {
	return net.JoinHostPort(host, fmt.Sprint(portOf(t, a)))
}

// setLimit sets a resource limit's field, whose type differs by OS.
func setLimit[T int64 | uint64](field *T, n int) { *field = T(n) }

// wildcardDial records, by family, whether a connection to the unspecified
// address reaches a listener of this host. FreeBSD 15 refuses one to
// 0.0.0.0 unless net.inet.ip.connect_inaddr_wild is set.
var wildcardDial sync.Map // "tcp4" or "tcp6" -> bool

// dialsWildcard reports whether dialing a, if it is a wildcard address,
// reaches a listener here, as it does for net.Listen's listeners; it is
// true for a specific address.
func dialsWildcard(t testing.TB, a net.Addr) bool {
	t.Helper()
	ap := a.(*net.TCPAddr).AddrPort()
	if !ap.Addr().IsUnspecified() {
		return true
	}
	network := "tcp6"
	if ap.Addr().Unmap().Is4() {
		network = "tcp4"
	}
	if ok, found := wildcardDial.Load(network); found {
		return ok.(bool)
	}
	ln, err := net.Listen(network, ":0")
	require.NoError(t, err)
	defer ln.Close()
	c, err := net.DialTimeout("tcp", ln.Addr().String(), ioTimeout)
	if err == nil {
		c.Close()
	} else {
		t.Logf("dialing %v fails here, for net.Listen too: %v", ln.Addr(), err)
	}
	wildcardDial.Store(network, err == nil)
	return err == nil
}

// mappedHost returns an IPv4 address of this host whose clients reach a
// Single-mode listener's dual-stack socket, and so arrive IPv4-mapped:
// 127.0.0.1 where the listener holds no loopback guards (Linux), else
// 127.0.0.2 where it is a local address (the FreeBSD VM assigns it), else
// the test is skipped.
func mappedHost(t testing.TB) string {
	t.Helper()
	ln, err := (&dualstack.ListenConfig{Mode: dualstack.Single}).Listen(context.Background(), "tcp", ":0")
	require.NoError(t, err)
	defer ln.Close()
	for _, host := range []string{"127.0.0.1", "127.0.0.2"} {
		c, err := net.DialTimeout("tcp", hostPort(t, host, ln.Addr()), ioTimeout)
		if err != nil {
			continue
		}
		c.Close()
		got, err := ln.Accept()
		require.NoError(t, err)
		mapped := got.(dualstack.Conn).NetConn().RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Is4In6()
		got.Close()
		if mapped {
			return host
		}
	}
	t.Skipf("no IPv4 address here reaches a Single listener's dual-stack socket (127.0.0.1 is guarded; 127.0.0.2 is not local)")
	return ""
}

// sockoptInt reads an integer socket option through a raw connection.
func sockoptInt(t testing.TB, rc syscall.RawConn, level, opt int) int {
	t.Helper()
	var v int
	var serr error
	require.NoError(t, rc.Control(func(fd uintptr) { v, serr = unix.GetsockoptInt(int(fd), level, opt) }))
	require.NoError(t, serr)
	return v
}
