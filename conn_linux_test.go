package dualstack_test

import (
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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
