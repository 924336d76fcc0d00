//go:build linux || darwin || dragonfly || freebsd || netbsd || openbsd

package dualstack_test

import (
	"context"
	"errors"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/dualstack-go/dualstack"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestPollStartsNoGoroutine: where the OS has epoll or kqueue, Accept and
// PacketConn's reads on several sockets run in the caller's goroutine: the
// number of goroutines does not change as they accept, read, wait and are
// woken by Close.
func TestPollStartsNoGoroutine(t *testing.T) {
	checkFDs := requireNoFDLeak(t)
	ln, err := (&dualstack.ListenConfig{Mode: dualstack.Separate}).Listen(context.Background(), "tcp", "localhost:0")
	require.NoError(t, err)
	pc, err := (&dualstack.ListenConfig{Mode: dualstack.Separate}).ListenPacket(context.Background(), "udp", "localhost:0")
	require.NoError(t, err)
	settle := func() int {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
		return runtime.NumGoroutine()
	}
	base := settle()
	buf := make([]byte, 16)
	for range 5 {
		for _, host := range []string{"127.0.0.1", "::1"} {
			c, err := net.Dial("tcp", hostPort(t, host, ln.Addr()))
			require.NoError(t, err)
			s, err := ln.Accept()
			require.NoError(t, err)
			s.Close()
			c.Close()
			u, err := net.Dial("udp", hostPort(t, host, pc.LocalAddr()))
			require.NoError(t, err)
			_, err = u.Write([]byte("x"))
			require.NoError(t, err)
			_, _, err = pc.ReadFromUDPAddrPort(buf)
			require.NoError(t, err)
			u.Close()
		}
	}
	assert.Equal(t, base, settle(), "goroutines after accepting and reading")
	assert.Zero(t, listenerGoroutines())

	// A blocked Accept and a blocked read, woken by a deadline, then by
	// Close: the only goroutines are the two that called them.
	errc := make(chan error, 2)
	go func() { _, err := ln.Accept(); errc <- err }()
	go func() { _, _, err := pc.ReadFromUDPAddrPort(make([]byte, 16)); errc <- err }()
	time.Sleep(20 * time.Millisecond)
	assert.Equal(t, base+2, runtime.NumGoroutine(), "goroutines while Accept and a read wait")
	require.NoError(t, ln.Close())
	require.NoError(t, pc.Close())
	for range 2 {
		select {
		case err := <-errc:
			require.True(t, errors.Is(err, net.ErrClosed), "%v", err)
		case <-time.After(ioTimeout):
			t.Fatal("Close did not wake a waiting call")
		}
	}
	assert.Equal(t, base, settle(), "goroutines after Close")
	checkFDs()
}
