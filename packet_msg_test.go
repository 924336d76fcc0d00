//go:build unix

package dualstack_test

import (
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/dualstack-go/dualstack"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// msgEcho answers each packet with WriteMsgUDPAddrPort, and hands the
// ancillary data of what it read to got.
func msgEcho(pc *dualstack.PacketConn, got chan<- []byte) {
	buf, oob := make([]byte, 2048), make([]byte, 512)
	for {
		n, oobn, _, src, err := pc.ReadMsgUDPAddrPort(buf, oob)
		if err != nil {
			close(got)
			return
		}
		got <- append([]byte(nil), oob[:oobn]...)
		pc.WriteMsgUDPAddrPort(buf[:n], nil, src)
	}
}

// TestPacketConnMsg: ReadMsgUDPAddrPort and WriteMsgUDPAddrPort carry
// packets over both families, with unmapped sources; the host's reader
// and the portable one.
func TestPacketConnMsg(t *testing.T) {
	for _, impl := range packetImpls {
		for _, mode := range []dualstack.Mode{dualstack.Separate, dualstack.Single} {
			t.Run(impl.name+"/"+mode.String(), func(t *testing.T) {
				pc, err := impl.listen(&dualstack.ListenConfig{Mode: mode}, t.Context(), "udp", ":0")
				require.NoError(t, err)
				got := make(chan []byte, 8)
				go msgEcho(pc, got)
				defer func() { pc.Close(); <-got }()
				port := pc.LocalAddr().(*net.UDPAddr).Port
				for _, h := range []string{"127.0.0.1", "::1"} {
					c, err := net.Dial("udp", net.JoinHostPort(h, itoa(port)))
					require.NoError(t, err)
					c.SetDeadline(time.Now().Add(ioTimeout))
					_, err = c.Write([]byte("ping " + h))
					require.NoError(t, err)
					b := make([]byte, 64)
					n, err := c.Read(b)
					require.NoError(t, err, h)
					assert.Equal(t, "ping "+h, string(b[:n]))
					c.Close()
				}
			})
		}
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

// TestPacketConnRaw: SyscallConn's Control reaches every socket (each
// descriptor once) and its Read refuses with several; the buffer setters
// reach every socket (SO_RCVBUF and SO_SNDBUF read back through
// SyscallConns).
func TestPacketConnRaw(t *testing.T) {
	pc, err := dualstack.ListenPacket("udp", "localhost:0")
	require.NoError(t, err)
	defer pc.Close()
	rc, err := pc.SyscallConn()
	require.NoError(t, err)
	fds := map[uintptr]bool{}
	require.NoError(t, rc.Control(func(fd uintptr) { fds[fd] = true }))
	assert.Len(t, fds, len(pc.Addrs()))
	assert.Error(t, rc.Read(func(uintptr) bool { return true }))

	require.NoError(t, pc.SetReadBuffer(1<<18))
	require.NoError(t, pc.SetWriteBuffer(1<<18))
	rcs, err := pc.SyscallConns()
	require.NoError(t, err)
	for _, rc := range rcs {
		for _, opt := range []int{unix.SO_RCVBUF, unix.SO_SNDBUF} {
			assert.GreaterOrEqual(t, sockoptInt(t, rc, unix.SOL_SOCKET, opt), 1<<18)
		}
	}

	var zero dualstack.PacketConn
	_, _, _, _, err = zero.ReadMsgUDPAddrPort(nil, nil)
	assert.Error(t, err)
	_, _, err = zero.WriteMsgUDPAddrPort(nil, nil, netip.AddrPort{})
	assert.Error(t, err)
	assert.Error(t, zero.SetReadBuffer(1))
	_, err = zero.SyscallConn()
	assert.Error(t, err)
	pc4, err := dualstack.ListenPacket("udp4", "127.0.0.1:0")
	require.NoError(t, err)
	defer pc4.Close()
	_, _, err = pc4.WriteMsgUDPAddrPort([]byte("x"), nil, netip.MustParseAddrPort("[::1]:1"))
	var oe *net.OpError
	require.ErrorAs(t, err, &oe, "no socket of the destination's family")
}
