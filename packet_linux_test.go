package dualstack_test

import (
	"context"
	"errors"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/dualstack-go/dualstack"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestErrorQueueReadParks: a UDP socket whose error queue holds an ICMP
// error (IP_RECVERR set through Control) keeps EPOLLERR raised until the
// queue is read with MSG_ERRQUEUE. A blocked read must still park: over
// 300 ms it asks epoll a handful of times. The control, the same reader
// with its sockets held level-triggered, spins.
func TestErrorQueueReadParks(t *testing.T) {
	lc := dualstack.ListenConfig{Control: func(network, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if network == "udp4" {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_RECVERR, 1)
			} else {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_RECVERR, 1)
			}
		})
		return errors.Join(err, serr)
	}}
	calls := func(listen func(*dualstack.ListenConfig, context.Context, string, string) (*dualstack.PacketConn, error)) uint64 {
		pc, err := listen(&lc, context.Background(), "udp", "localhost:0")
		require.NoError(t, err)
		defer pc.Close()
		require.Len(t, pc.Addrs(), 2, "the poller serves several sockets")

		// A port nobody holds: the datagram draws an ICMP port
		// unreachable, queued on the IPv4 socket.
		gone, err := net.ListenPacket("udp4", "127.0.0.1:0")
		require.NoError(t, err)
		closed := gone.LocalAddr()
		gone.Close()
		_, err = pc.WriteTo([]byte("x"), closed)
		require.NoError(t, err)

		before := dualstack.PollCalls()
		require.NoError(t, pc.SetReadDeadline(time.Now().Add(300*time.Millisecond)))
		refused := 0
		for {
			_, _, err := pc.ReadFrom(make([]byte, 64))
			if errors.Is(err, syscall.ECONNREFUSED) {
				refused++ // the socket's pending error, reported once
				continue
			}
			require.ErrorIs(t, err, os.ErrDeadlineExceeded)
			break
		}
		assert.Equal(t, 1, refused, "the ICMP error reached the socket")
		return dualstack.PollCalls() - before
	}
	parked := calls((*dualstack.ListenConfig).ListenPacket)
	spun := calls(dualstack.ListenPacketLevelTriggered)
	t.Logf("epoll_wait calls in 300 ms: %d draining, %d level-triggered (control)", parked, spun)
	assert.Less(t, parked, uint64(20), "a blocked read asked epoll %d times", parked)
	assert.Greater(t, spun, uint64(1000), "the control should spin on EPOLLERR")
}
