package dualstack

import (
	"errors"
	"net"
	"net/netip"
	"syscall"
)

// ReadMsgUDPAddrPort reads a packet and its ancillary data (oob), as
// [net.UDPConn.ReadMsgUDPAddrPort] does, from whichever socket has one;
// the ancillary data are those of that socket (IP_PKTINFO, IP_TOS, ...
// as set through SyscallConn). The source is unmapped. On systems without
// epoll or kqueue (Windows, illumos), a PacketConn of several sockets
// returns no ancillary data (oobn 0).
func (p *PacketConn) ReadMsgUDPAddrPort(b, oob []byte) (n, oobn, flags int, addr netip.AddrPort, err error) {
	if !p.ok() {
		return 0, 0, 0, netip.AddrPort{}, errZero("read", "udp")
	}
	if p.r == nil {
		n, oobn, flags, addr, err = p.conns[0].ReadMsgUDPAddrPort(b, oob)
		return n, oobn, flags, UnmapAddrPort(addr), err
	}
	n, oobn, flags, addr, k, err := p.r.readMsg(b, oob)
	if p.routes != nil && err == nil {
		p.routes.remember(addr, k)
	}
	if err != nil {
		return n, oobn, flags, addr, p.opError("read", nil, err)
	}
	return n, oobn, flags, addr, nil
}

// WriteMsgUDPAddrPort writes a packet with ancillary data (oob) to addr,
// through the socket that WriteToUDPAddrPort would use, as
// [net.UDPConn.WriteMsgUDPAddrPort] does: the ancillary data must suit
// that socket's family.
func (p *PacketConn) WriteMsgUDPAddrPort(b, oob []byte, addr netip.AddrPort) (n, oobn int, err error) {
	if !p.ok() {
		return 0, 0, errZero("write", "udp")
	}
	c, addr := p.connFor(addr)
	if c == nil {
		return 0, 0, p.opError("write", net.UDPAddrFromAddrPort(addr), errNoSocketForFamily)
	}
	return c.WriteMsgUDPAddrPort(b, oob, addr)
}

// There is no ReadMsgUDP or WriteMsgUDP: with them a PacketConn would
// look to quic-go like a single *net.UDPConn (its OOBCapablePacketConn),
// whose batch reads through the raw connection a PacketConn of several
// sockets cannot serve; quic-go would then refuse it. Without them quic-go
// reads with ReadFrom; internal/ecosystem shows an adapter that gives it
// the batch path over ReadMsgUDPAddrPort.

// SetReadBuffer sets the receive buffer of every socket, as
// [net.UDPConn.SetReadBuffer] does of one.
func (p *PacketConn) SetReadBuffer(bytes int) error {
	return p.eachConn("set", func(c *net.UDPConn) error { return c.SetReadBuffer(bytes) })
}

// SetWriteBuffer sets the send buffer of every socket.
func (p *PacketConn) SetWriteBuffer(bytes int) error {
	return p.eachConn("set", func(c *net.UDPConn) error { return c.SetWriteBuffer(bytes) })
}

func (p *PacketConn) eachConn(op string, f func(c *net.UDPConn) error) error {
	if !p.ok() {
		return errZero(op, "udp")
	}
	for _, c := range p.conns {
		if err := f(c); err != nil {
			return err
		}
	}
	return nil
}

// SyscallConn returns a raw connection over every socket, for setting
// options on all: its Control runs f on each socket in turn (the sockets
// asked for, in the order of Addrs, then the guards read from). Read and
// Write, which wait on one socket, work with one socket only; with
// several, use SyscallConns.
func (p *PacketConn) SyscallConn() (syscall.RawConn, error) {
	if !p.ok() {
		return nil, errZero("raw-control", "udp")
	}
	if len(p.conns) == 1 {
		return p.conns[0].SyscallConn()
	}
	rcs, err := rawConns(p.conns, (*net.UDPConn).SyscallConn)
	if err != nil {
		return nil, err
	}
	return multiRawConn(rcs), nil
}

// multiRawConn is the raw connection of several sockets.
type multiRawConn []syscall.RawConn

var errRawSeveral = errors.New("dualstack: Read and Write of a raw connection need one socket; use SyscallConns")

func (m multiRawConn) Control(f func(fd uintptr)) error {
	for _, rc := range m {
		if err := rc.Control(f); err != nil {
			return err
		}
	}
	return nil
}

func (multiRawConn) Read(func(fd uintptr) bool) error  { return errRawSeveral }
func (multiRawConn) Write(func(fd uintptr) bool) error { return errRawSeveral }
