//go:build unix

package dualstack_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/dualstack-go/dualstack"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestFilesRoundTrip: a listener's Files make, through FileListener, a
// listener on the same sockets, in every mode and address form, which the
// original's clients reach (token exchange) after the original is closed;
// the mode and the addresses carry over.
func TestFilesRoundTrip(t *testing.T) {
	for _, c := range []struct {
		mode    dualstack.Mode
		address string
		hosts   []string
	}{
		{dualstack.Separate, ":0", []string{"127.0.0.1", "::1"}},
		{dualstack.Single, ":0", []string{"127.0.0.1", "::1"}},
		{dualstack.Auto, "localhost:0", []string{"127.0.0.1", "::1"}},
		{dualstack.Auto, "[::1]:0", []string{"::1"}},
	} {
		t.Run(fmt.Sprintf("%v %s", c.mode, c.address), func(t *testing.T) {
			checkFDs := requireNoFDLeak(t)
			lc := dualstack.ListenConfig{Mode: c.mode}
			ln, err := lc.Listen(context.Background(), "tcp", c.address)
			require.NoError(t, err)
			files, err := ln.Files()
			require.NoError(t, err)
			require.Len(t, files, len(ln.Addrs()))
			addrs, addr, mode := ln.Addrs(), ln.Addr(), ln.Mode()
			require.NoError(t, ln.Close())

			inherited, err := dualstack.FileListener(files...)
			require.NoError(t, err)
			for _, f := range files {
				f.Close() // the listener holds duplicates
			}
			assert.Equal(t, mode, inherited.Mode())
			assert.Equal(t, fmt.Sprint(addrs), fmt.Sprint(inherited.Addrs()))
			assert.Equal(t, addr.String(), inherited.Addr().String())
			ts := serveTokens(t, inherited)
			for _, h := range c.hosts {
				peer, err := ts.exchange("tcp", hostPort(t, h, inherited.Addr()))
				require.NoError(t, err, h)
				assert.Equal(t, h, mustHost(t, peer), "the peer is reported unmapped")
			}
			inherited.Close()
			checkFDs()
		})
	}
}

func mustHost(t *testing.T, hostport string) string {
	t.Helper()
	h, _, err := net.SplitHostPort(hostport)
	require.NoError(t, err)
	return h
}

// TestPacketFilesRoundTrip: the same for a PacketConn.
func TestPacketFilesRoundTrip(t *testing.T) {
	checkFDs := requireNoFDLeak(t)
	pc, err := dualstack.ListenPacket("udp", ":0")
	require.NoError(t, err)
	files, err := pc.Files()
	require.NoError(t, err)
	require.NoError(t, pc.Close())
	inherited, err := dualstack.FilePacketConn(files...)
	require.NoError(t, err)
	for _, f := range files {
		f.Close()
	}
	secret := echo(t, inherited)
	for _, h := range []string{"127.0.0.1", "::1"} {
		src, err := udpExchange(inherited, h, secret)
		require.NoError(t, err, h)
		assert.Equal(t, h, mustHost(t, src))
	}
	inherited.Close()
	checkFDs()
}

// TestFileListenerRefuses: what is not a set of listening TCP sockets on
// one port is refused with a *net.OpError, and nothing is left open.
func TestFileListenerRefuses(t *testing.T) {
	checkFDs := requireNoFDLeak(t)
	fileListenerRefuses(t)
	checkFDs()
}

func fileListenerRefuses(t *testing.T) {
	fileOf := func(c interface{ File() (*os.File, error) }) *os.File {
		f, err := c.File()
		require.NoError(t, err)
		return f
	}
	a, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	defer a.Close()
	b, err := net.Listen("tcp6", "[::1]:0")
	require.NoError(t, err)
	defer b.Close()
	u, err := net.ListenPacket("udp4", "127.0.0.1:0")
	require.NoError(t, err)
	defer u.Close()
	// A socket bound and not listening: the listener of a dialed
	// connection's other end is not that, so make one by hand.
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	require.NoError(t, err)
	require.NoError(t, syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}))
	bound := os.NewFile(uintptr(fd), "bound")
	defer bound.Close()

	fa, fb, fu := fileOf(a.(*net.TCPListener)), fileOf(b.(*net.TCPListener)), fileOf(u.(*net.UDPConn))
	defer fa.Close()
	defer fb.Close()
	defer fu.Close()
	for _, c := range []struct {
		name  string
		files []*os.File
		want  string
	}{
		{"no files", nil, "no files"},
		{"nil file", []*os.File{nil}, "no files"},
		{"two ports", []*os.File{fa, fb}, "not on one port"},
		{"one socket twice", []*os.File{fa, fa}, "on one address"},
		{"not listening", []*os.File{bound}, "not listening"},
		{"UDP", []*os.File{fu}, ""},
	} {
		ln, err := dualstack.FileListener(c.files...)
		assert.Nil(t, ln, c.name)
		var oe *net.OpError
		require.ErrorAs(t, err, &oe, c.name)
		assert.Equal(t, "file", oe.Op)
		assert.ErrorContains(t, err, c.want, c.name)
	}
	pc, err := dualstack.FilePacketConn(fa)
	assert.Nil(t, pc)
	require.Error(t, err, "a TCP listener is no PacketConn")
}

// TestFilesZeroAndClosed: the zero values and closed ones fail cleanly.
func TestFilesZeroAndClosed(t *testing.T) {
	var l dualstack.Listener
	_, err := l.Files()
	require.Error(t, err)
	_, err = l.SyscallConns()
	require.Error(t, err)
	var p dualstack.PacketConn
	_, err = p.Files()
	require.Error(t, err)
	_, err = p.SyscallConns()
	require.Error(t, err)

	ln, err := dualstack.Listen("tcp", ":0")
	require.NoError(t, err)
	ln.Close()
	_, err = ln.Files()
	require.Error(t, err)
}

// TestSyscallConns: one raw connection a socket asked for, in Addrs order,
// each on its socket (its local address read through it).
func TestSyscallConns(t *testing.T) {
	ln, err := dualstack.Listen("tcp", "localhost:0")
	require.NoError(t, err)
	defer ln.Close()
	rcs, err := ln.SyscallConns()
	require.NoError(t, err)
	require.Len(t, rcs, 2)
	for i, rc := range rcs {
		var sa syscall.Sockaddr
		var serr error
		require.NoError(t, rc.Control(func(fd uintptr) { sa, serr = syscall.Getsockname(int(fd)) }))
		require.NoError(t, serr)
		switch a := sa.(type) {
		case *syscall.SockaddrInet4:
			assert.Equal(t, "127.0.0.1", ln.Addrs()[i].(*net.TCPAddr).IP.String())
		case *syscall.SockaddrInet6:
			assert.Equal(t, "::1", ln.Addrs()[i].(*net.TCPAddr).IP.String())
		default:
			t.Fatalf("sockaddr %T", a)
		}
	}
}
