//go:build linux || darwin || dragonfly || freebsd || netbsd || openbsd

package dualstack

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// pollReader reads from several UDP sockets in the caller's goroutine. It
// tries the sockets in turn with a non-blocking recvfrom(2), through each
// socket's RawConn, so that the socket's read deadline and closing apply;
// when none has a packet it waits on a poller, as pollAcceptor does. One
// read runs at a time.
//
// The turn goes to the next socket after each packet, so that sockets with
// packets waiting are served alternately. A socket found empty is passed
// over for quietReads packets after, so that a lone busy socket pays for a
// failed recvfrom on the others only once in quietReads+1 packets.
type pollReader struct {
	conns []*net.UDPConn
	rcs   []syscall.RawConn
	p     poller

	mu    sync.Mutex // serializes reads; guards the fields below
	next  int        // the socket to try first
	quiet int        // packets before the others are tried first again
	ready []bool     // scratch for the poller's answer
	buf   []byte
	n     int
	src   netip.AddrPort
	rerr  error
	rsa   unix.RawSockaddrAny     // the source of the packet being read
	recvs []func(fd uintptr) bool // one a socket, made once
	// For readMsg: oob is the caller's buffer (nil for read), oobn and
	// flags what recvmsg(2) gave.
	oob         []byte
	oobn, flags int
}

const quietReads = 16

func newPollReader(conns []*net.UDPConn) (packetReader, error) {
	return newPollReaderDraining(conns, true)
}

// newPollReaderDraining is newPollReader; drains=false makes the poller
// level-triggered, as it was: the control of TestErrorQueueReadParks.
func newPollReaderDraining(conns []*net.UDPConn, drains bool) (packetReader, error) {
	scs := make([]syscall.Conn, len(conns))
	r := &pollReader{conns: conns, ready: make([]bool, len(conns))}
	for i, c := range conns {
		scs[i] = c
		rc, err := c.SyscallConn()
		if err != nil {
			return nil, err
		}
		r.rcs = append(r.rcs, rc)
		r.recvs = append(r.recvs, r.recv)
	}
	p, err := newPoller(scs, drains)
	if err != nil {
		return nil, err
	}
	r.p = p
	return r, nil
}

func (r *pollReader) read(b []byte) (int, netip.AddrPort, int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.readLocked(b)
}

// readMsg is read with the packet's ancillary data, through recvmsg(2).
func (r *pollReader) readMsg(b, oob []byte) (n, oobn, flags int, src netip.AddrPort, k int, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.oob, r.oobn, r.flags = oob, 0, 0
	defer func() { r.oob = nil }()
	n, src, k, err = r.readLocked(b)
	return n, r.oobn, r.flags, src, k, err
}

func (r *pollReader) readLocked(b []byte) (int, netip.AddrPort, int, error) {
	r.buf = b
	defer func() { r.buf = nil }()
	n := len(r.conns)
	for {
		for i := range n {
			k := (r.next + i) % n
			// Read checks the socket's deadline and that it is open,
			// then calls recv once: recv never asks it to wait.
			if err := r.rcs[k].Read(r.recvs[k]); err != nil {
				var oe *net.OpError
				if errors.As(err, &oe) {
					err = oe.Err // RawConn's own wrapping
				}
				return 0, netip.AddrPort{}, -1, err
			}
			if r.rerr == unix.EAGAIN {
				continue
			}
			switch {
			case i > 0:
				r.next, r.quiet = k, quietReads
			case r.quiet > 0:
				r.quiet--
			default:
				r.next = (k + 1) % n
			}
			if r.rerr != nil {
				return 0, netip.AddrPort{}, -1, os.NewSyscallError("recvfrom", r.rerr)
			}
			return r.n, r.src, k, nil
		}
		// Nothing anywhere: wait for a packet, a deadline or Close.
		if err := r.p.wait(r.ready); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return 0, netip.AddrPort{}, -1, err
			}
			return 0, netip.AddrPort{}, -1, net.ErrClosed
		}
		clear(r.ready)
	}
}

// recv receives one packet from fd without waiting, into r.buf, r.n and
// r.src, or sets r.rerr. It calls recvfrom(2) itself: unix.Recvfrom would
// allocate the source address of every packet.
func (r *pollReader) recv(fd uintptr) bool {
	if r.oob != nil {
		return r.recvMsg(fd)
	}
	p := unsafe.Pointer(&r.rsa) // a valid address for an empty buffer
	if len(r.buf) > 0 {
		p = unsafe.Pointer(&r.buf[0])
	}
	for {
		rsaLen := uint32(unsafe.Sizeof(r.rsa))
		n, _, errno := unix.Syscall6(unix.SYS_RECVFROM, fd, uintptr(p), uintptr(len(r.buf)),
			unix.MSG_DONTWAIT, uintptr(unsafe.Pointer(&r.rsa)), uintptr(unsafe.Pointer(&rsaLen)))
		if errno == unix.EINTR {
			continue
		}
		r.rerr = nil
		if errno != 0 {
			r.rerr = errno
			return true
		}
		r.n = int(n)
		r.src = sockaddrToAddrPort(&r.rsa)
		return true
	}
}

// recvMsg is recv with ancillary data, into r.oob.
func (r *pollReader) recvMsg(fd uintptr) bool {
	for {
		n, oobn, flags, from, err := unix.Recvmsg(int(fd), r.buf, r.oob, unix.MSG_DONTWAIT)
		if err == unix.EINTR {
			continue
		}
		r.rerr = err
		if err == nil {
			r.n, r.oobn, r.flags = n, oobn, flags
			r.src = sockaddrAddrPort(from)
		}
		return true
	}
}

// sockaddrAddrPort converts a unix.Sockaddr, unmapped.
func sockaddrAddrPort(sa unix.Sockaddr) netip.AddrPort {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
	case *unix.SockaddrInet6:
		a := netip.AddrFrom16(sa.Addr)
		if sa.ZoneId != 0 {
			a = a.WithZone(zoneName(sa.ZoneId))
		}
		return UnmapAddrPort(netip.AddrPortFrom(a, uint16(sa.Port)))
	}
	return netip.AddrPort{}
}

// sockaddrToAddrPort converts a source address, unmapped.
func sockaddrToAddrPort(rsa *unix.RawSockaddrAny) netip.AddrPort {
	switch rsa.Addr.Family {
	case unix.AF_INET:
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(rsa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), ntohs(sa.Port))
	case unix.AF_INET6:
		sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(rsa))
		a := netip.AddrFrom16(sa.Addr)
		if sa.Scope_id != 0 {
			a = a.WithZone(zoneName(sa.Scope_id))
		}
		return UnmapAddrPort(netip.AddrPortFrom(a, ntohs(sa.Port)))
	}
	return netip.AddrPort{}
}

func ntohs(p uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(&p))
	return uint16(b[0])<<8 | uint16(b[1])
}

// zones names the interfaces of link-local sources' scope indexes.
var zones = &zoneCache{interfaces: net.Interfaces, now: time.Now}

// zoneName returns the name of the interface of a scope index, as the net
// package reports zones, or the number where there is no such interface.
func zoneName(index uint32) string { return zones.name(index) }

// zoneCacheTTL is how long a table of interface names is used before it is
// read again, as the net package does (net's zoneCache).
const zoneCacheTTL = time.Minute

// zoneCache maps interface indexes to names. The table is read again when
// it is a minute old, and at once for an index it lacks; a renamed
// interface is seen within a minute, as the net package sees it. An index
// no interface has, or any index while the table cannot be read (out of
// descriptors), is reported as its number and not remembered.
type zoneCache struct {
	interfaces func() ([]net.Interface, error)
	now        func() time.Time

	mu      sync.RWMutex
	names   map[uint32]string
	updated time.Time
}

func (z *zoneCache) name(index uint32) string {
	z.mu.RLock()
	name, ok := z.names[index]
	fresh := z.now().Sub(z.updated) < zoneCacheTTL
	z.mu.RUnlock()
	if ok && fresh {
		return name
	}
	if names, ok := z.update(); ok {
		if name, ok := names[index]; ok {
			return name
		}
	}
	return strconv.FormatUint(uint64(index), 10)
}

// update reads the table again, and returns it, unless that fails.
func (z *zoneCache) update() (map[uint32]string, bool) {
	ifs, err := z.interfaces()
	if err != nil {
		return nil, false
	}
	names := make(map[uint32]string, len(ifs))
	for _, ifi := range ifs {
		names[uint32(ifi.Index)] = ifi.Name
	}
	z.mu.Lock()
	z.names, z.updated = names, z.now()
	z.mu.Unlock()
	return names, true
}

func (r *pollReader) setReadDeadline(t time.Time) error {
	if err := r.p.setDeadline(t); err != nil {
		return err
	}
	for _, c := range r.conns {
		if err := c.SetReadDeadline(t); err != nil {
			return err
		}
	}
	return nil
}

func (r *pollReader) close() error {
	// Closing the poller wakes a waiting read; closing the sockets fails
	// one that is past the wait.
	r.p.close()
	return closeAll(r.conns)
}
