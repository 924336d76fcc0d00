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

// newPacketReader makes the reader of a PacketConn on several sockets.
var newPacketReader = newEpollReader

// epollReader reads from several UDP sockets in the caller's goroutine. It
// tries the sockets in turn with a non-blocking recvfrom(2), through each
// socket's RawConn, so that the socket's read deadline and closing apply;
// when none has a packet it parks on an epoll descriptor registered with
// the runtime's poller, as epollAcceptor does. One read runs at a time.
//
// The turn goes to the next socket after each packet, so that sockets with
// packets waiting are served alternately. A socket found empty is passed
// over for quietReads packets after, so that a lone busy socket pays for a
// failed recvfrom on the others only once in quietReads+1 packets.
type epollReader struct {
	conns []*net.UDPConn
	rcs   []syscall.RawConn
	ep    *os.File
	eprc  syscall.RawConn

	mu    sync.Mutex // serializes reads; guards the fields below
	next  int        // the socket to try first
	quiet int        // packets before the others are tried first again
	evs   []unix.EpollEvent
	buf   []byte
	n     int
	src   netip.AddrPort
	rerr  error
	rsa   unix.RawSockaddrAny     // the source of the packet being read
	recvs []func(fd uintptr) bool // one a socket, made once
	wait  func(fd uintptr) bool
}

const quietReads = 16

func newEpollReader(conns []*net.UDPConn) (packetReader, error) {
	scs := make([]syscall.Conn, len(conns))
	r := &epollReader{conns: conns, evs: make([]unix.EpollEvent, len(conns))}
	for i, c := range conns {
		scs[i] = c
		rc, err := c.SyscallConn()
		if err != nil {
			return nil, err
		}
		r.rcs = append(r.rcs, rc)
		r.recvs = append(r.recvs, r.recv)
	}
	ep, eprc, err := newEpoll(scs)
	if err != nil {
		return nil, err
	}
	r.ep, r.eprc = ep, eprc
	r.wait = r.poll
	return r, nil
}

func (r *epollReader) read(b []byte) (int, netip.AddrPort, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
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
				return 0, netip.AddrPort{}, err
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
				return 0, netip.AddrPort{}, os.NewSyscallError("recvfrom", r.rerr)
			}
			return r.n, r.src, nil
		}
		// Nothing anywhere: wait for a packet, a deadline or Close.
		if err := r.eprc.Read(r.wait); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return 0, netip.AddrPort{}, err
			}
			return 0, netip.AddrPort{}, net.ErrClosed
		}
	}
}

// recv receives one packet from fd without waiting, into r.buf, r.n and
// r.src, or sets r.rerr. It calls recvfrom(2) itself: unix.Recvfrom would
// allocate the source address of every packet.
func (r *epollReader) recv(fd uintptr) bool {
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

var zoneNames sync.Map // uint32 index -> string

// zoneName returns the name of the interface of a scope index, as the net
// package reports zones, or the number where there is no such interface.
func zoneName(index uint32) string {
	if name, ok := zoneNames.Load(index); ok {
		return name.(string)
	}
	name := strconv.FormatUint(uint64(index), 10)
	if ifi, err := net.InterfaceByIndex(int(index)); err == nil {
		name = ifi.Name
	}
	zoneNames.Store(index, name)
	return name
}

// poll reports whether any socket has a packet, without waiting.
func (r *epollReader) poll(fd uintptr) bool {
	for {
		n, err := unix.EpollWait(int(fd), r.evs, 0)
		if err != unix.EINTR {
			return n > 0 || err != nil
		}
	}
}

func (r *epollReader) setReadDeadline(t time.Time) error {
	if err := r.ep.SetReadDeadline(t); err != nil {
		return err
	}
	for _, c := range r.conns {
		if err := c.SetReadDeadline(t); err != nil {
			return err
		}
	}
	return nil
}

func (r *epollReader) close() error {
	// Closing the epoll descriptor wakes a parked read; closing the
	// sockets fails one that is past the wait.
	r.ep.Close()
	return closeAll(r.conns)
}
