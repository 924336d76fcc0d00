package dualstack_test

import (
	"crypto/rand"
	"net"
	"net/netip"
	"testing"
	"unsafe"

	"github.com/dualstack-go/dualstack"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestPacketConnPktinfo: with IP_PKTINFO and IPV6_RECVPKTINFO set on every
// socket through SyscallConn, ReadMsgUDPAddrPort hands over each packet's
// ancillary data from the socket that received it: its destination
// address is the one the client wrote to, in the client's family.
func TestPacketConnPktinfo(t *testing.T) {
	pc, err := dualstack.ListenPacket("udp", ":0")
	require.NoError(t, err)
	rc, err := pc.SyscallConn()
	require.NoError(t, err)
	require.NoError(t, rc.Control(func(fd uintptr) {
		// Each socket takes the option of its family.
		unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_PKTINFO, 1)
		unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1)
	}))
	secret, got := rand.Text(), make(chan []byte, 8)
	go msgEcho(pc, secret, got)
	defer func() { pc.Close(); <-got }()
	port := pc.LocalAddr().(*net.UDPAddr).Port
	for _, h := range []string{"127.0.0.1", "::1"} {
		oob := msgRoundTrip(t, h, port, secret, got)
		msgs, err := unix.ParseSocketControlMessage(oob)
		require.NoError(t, err)
		var dst netip.Addr
		for _, m := range msgs {
			switch {
			case m.Header.Level == unix.IPPROTO_IP && m.Header.Type == unix.IP_PKTINFO:
				info := (*unix.Inet4Pktinfo)(unsafePointer(m.Data))
				dst = netip.AddrFrom4(info.Addr)
			case m.Header.Level == unix.IPPROTO_IPV6 && m.Header.Type == unix.IPV6_PKTINFO:
				info := (*unix.Inet6Pktinfo)(unsafePointer(m.Data))
				dst = netip.AddrFrom16(info.Addr)
			}
		}
		assert.Equal(t, h, dst.String(), "the packet info of the socket that got the packet")
	}
}

func unsafePointer(b []byte) unsafe.Pointer { return unsafe.Pointer(&b[0]) }
