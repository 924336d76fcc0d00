//go:build unix

package dualstack_test

import (
	"crypto/rand"
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

// msgEcho answers each packet, with WriteMsgUDPAddrPort, by secret and the
// packet, and hands the ancillary data of what it read to got.
func msgEcho(pc *dualstack.PacketConn, secret string, got chan<- []byte) {
	buf, oob := make([]byte, 2048), make([]byte, 512)
	for {
		n, oobn, _, src, err := pc.ReadMsgUDPAddrPort(buf, oob)
		if err != nil {
			close(got)
			return
		}
		got <- append([]byte(nil), oob[:oobn]...)
		pc.WriteMsgUDPAddrPort(append([]byte(secret+" "), buf[:n]...), nil, src)
	}
}

// msgRoundTrip sends a fresh token from host to a msgEcho on port, requires
// the answer of that msgEcho (its secret and the token), and returns the
// ancillary data msgEcho read with the token.
func msgRoundTrip(t *testing.T, host string, port int, secret string, got <-chan []byte) []byte {
	t.Helper()
	c, err := net.Dial("udp", net.JoinHostPort(host, strconv.Itoa(port)))
	require.NoError(t, err)
	defer c.Close()
	c.SetDeadline(time.Now().Add(ioTimeout))
	token := rand.Text()
	_, err = c.Write([]byte(token))
	require.NoError(t, err)
	b := make([]byte, 256)
	n, err := c.Read(b)
	require.NoError(t, err, host)
	require.Equal(t, secret+" "+token, string(b[:n]), host)
	return <-got
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
				secret, got := rand.Text(), make(chan []byte, 8)
				go msgEcho(pc, secret, got)
				defer func() { pc.Close(); <-got }()
				port := pc.LocalAddr().(*net.UDPAddr).Port
				for _, h := range []string{"127.0.0.1", "::1"} {
					msgRoundTrip(t, h, port, secret, got)
				}
			})
		}
	}
}

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
