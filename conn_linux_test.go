package dualstack_test

import (
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/dualstack-go/dualstack"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// This test reads Linux's per-process I/O accounting.

// TestSingleConnSplice: io.Copy between two Single-mode connections goes
// through the underlying TCPConn's ReadFrom with the other TCPConn as
// source, where the kernel splices: the bytes never pass through user
// space. /proc/self/io counts bytes read by read-like system calls; a copy
// through a wrapper without ReadFrom and WriteTo doubles the count.
func TestSingleConnSplice(t *testing.T) {
	const size = 32 << 20
	ln := listenSingle(t)
	copyVia := func(wrap func(net.Conn) net.Conn, limit bool) (userBytes int64) {
		src, s1 := pair(t, ln, "127.0.0.1")
		dst, s2 := pair(t, ln, "::1")
		go func() {
			buf := make([]byte, 1<<20)
			for sent := 0; sent < size; sent += len(buf) {
				if _, err := src.Write(buf); err != nil {
					return
				}
			}
			src.Close()
		}()
		received := make(chan int64, 1)
		go func() {
			n, _ := io.Copy(io.Discard, dst)
			received <- n
		}()
		before := readChars(t)
		var r io.Reader = wrap(s1)
		if limit {
			r = &io.LimitedReader{R: r, N: size}
		}
		n, err := io.Copy(wrap(s2), r)
		require.NoError(t, err)
		require.EqualValues(t, size, n)
		s2.Close()
		require.EqualValues(t, size, <-received, "every byte arrived")
		return readChars(t) - before
	}

	same := func(c net.Conn) net.Conn { return c }
	hidden := func(c net.Conn) net.Conn { return struct{ net.Conn }{c} }

	viaConn := copyVia(same, false)
	viaLimited := copyVia(same, true)
	viaGeneric := copyVia(hidden, false)
	t.Logf("bytes read in user space for %d MiB: Conn %d MiB, LimitedReader %d MiB, generic %d MiB",
		size>>20, viaConn>>20, viaLimited>>20, viaGeneric>>20)
	// The receiving client reads size bytes itself in every case.
	assert.Less(t, viaConn, int64(size)*3/2, "io.Copy between Conns did not splice")
	assert.Less(t, viaLimited, int64(size)*3/2, "io.Copy from a LimitedReader of a Conn did not splice")
	assert.GreaterOrEqual(t, viaGeneric, int64(size)*2-(1<<20), "the generic copy should be visible, or the measure proves nothing")
}

// readChars returns the rchar count of /proc/self/io.
func readChars(t testing.TB) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		t.Skipf("no I/O accounting: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "rchar: "); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			require.NoError(t, err)
			return n
		}
	}
	t.Fatal("no rchar in /proc/self/io")
	return 0
}

// TestHandOverErrorNamesTheCall: out of descriptors when the socket is
// handed to the net package, the error says so in plain words: the
// socket, the call and its cause, with no empty file name.
func TestHandOverErrorNamesTheCall(t *testing.T) {
	var saved unix.Rlimit
	require.NoError(t, unix.Getrlimit(unix.RLIMIT_NOFILE, &saved))
	defer unix.Setrlimit(unix.RLIMIT_NOFILE, &saved)
	n := openFDs(t)
	for _, c := range []struct {
		network, address, want string
	}{
		{"tcp", "127.0.0.1:0", `^listen tcp 127\.0\.0\.1:\d+: IPv4 socket: net\.FileListener: fcntl: too many open files$`},
		{"udp", "127.0.0.1:0", `^listen udp 127\.0\.0\.1:\d+: IPv4 socket: net\.FilePacketConn: fcntl: too many open files$`},
	} {
		// Room for the socket, none for the net package's duplicate: every
		// descriptor below the limit taken but one.
		low := saved
		low.Cur = uint64(n + 8)
		require.NoError(t, unix.Setrlimit(unix.RLIMIT_NOFILE, &low))
		var fillers []int
		for {
			fd, err := unix.Open(os.DevNull, unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				break
			}
			fillers = append(fillers, fd)
		}
		require.NotEmpty(t, fillers)
		unix.Close(fillers[len(fillers)-1])
		fillers = fillers[:len(fillers)-1]
		var err error
		if c.network == "tcp" {
			_, err = dualstack.Listen(c.network, c.address)
		} else {
			_, err = dualstack.ListenPacket(c.network, c.address)
		}
		for _, fd := range fillers {
			unix.Close(fd)
		}
		require.NoError(t, unix.Setrlimit(unix.RLIMIT_NOFILE, &saved))
		require.ErrorIs(t, err, syscall.EMFILE)
		assert.Regexp(t, c.want, err.Error())
		assert.Equal(t, n, openFDs(t), "nothing left open")
	}
}
