package dualstack

import (
	"errors"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// newAcceptor makes the acceptor of a listener on several sockets.
var newAcceptor = newEpollAcceptor

// epollAcceptor accepts on several sockets in the caller's goroutine. The
// sockets are registered, level-triggered, with an epoll descriptor that is
// itself registered with the runtime's poller: Accept asks it which sockets
// have connections waiting, or parks until one does, and accepts from the
// first ready socket after the one it served last. One Accept runs at a
// time, so a socket found ready still has its connection when accepted.
// The epoll descriptor is made on the first Accept: a listener that only
// holds a port costs no more.
type epollAcceptor struct {
	lns  []*net.TCPListener
	addr net.Addr // for errors

	mu    sync.Mutex // serializes accepts; guards the fields below
	rc    syscall.RawConn
	evs   []unix.EpollEvent
	n     int   // events in evs
	werr  error // error of epoll_wait
	next  int   // the socket to look at first
	ready func(fd uintptr) bool
	// waiting marks the sockets that the last epoll_wait found ready and
	// that have not been accepted from since: each still has a connection,
	// since no one else accepts on them.
	waiting []bool

	epMu     sync.Mutex // guards ep, deadline and closed; never held while waiting
	ep       *os.File
	deadline time.Time
	closed   bool
}

func newEpollAcceptor(lns []*net.TCPListener, addr net.Addr) (acceptor, error) {
	m := &epollAcceptor{lns: lns, addr: addr, evs: make([]unix.EpollEvent, len(lns)), waiting: make([]bool, len(lns))}
	m.ready = m.poll // made once: a method value allocates
	return m, nil
}

// epoll returns the RawConn of the epoll descriptor, making it on first
// use. It is called with m.mu held.
func (m *epollAcceptor) epoll() (syscall.RawConn, error) {
	if m.rc != nil {
		return m.rc, nil
	}
	m.epMu.Lock()
	defer m.epMu.Unlock()
	if m.closed {
		return nil, net.ErrClosed
	}
	conns := make([]syscall.Conn, len(m.lns))
	for i, ln := range m.lns {
		conns[i] = ln
	}
	ep, rc, err := newEpoll(conns)
	if err != nil {
		return nil, err
	}
	if !m.deadline.IsZero() {
		ep.SetReadDeadline(m.deadline)
	}
	m.ep, m.rc = ep, rc
	return rc, nil
}

// newEpoll returns an epoll descriptor, registered with the runtime's
// poller, on which the sockets of conns are registered level-triggered
// for reading, each under its index.
func newEpoll(conns []syscall.Conn) (*os.File, syscall.RawConn, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, nil, os.NewSyscallError("epoll_create1", err)
	}
	for i, c := range conns {
		if err := epollAdd(epfd, c, i); err != nil {
			unix.Close(epfd)
			return nil, nil, err
		}
	}
	// Non-blocking, so that os.NewFile registers it with the poller.
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		return nil, nil, os.NewSyscallError("setnonblock", err)
	}
	ep := os.NewFile(uintptr(epfd), "dualstack-epoll")
	rc, err := ep.SyscallConn()
	if err != nil {
		ep.Close()
		return nil, nil, err
	}
	return ep, rc, nil
}

// epollAdd registers the socket of c with epfd under the index i.
func epollAdd(epfd int, c syscall.Conn, i int) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var cerr error
	err = rc.Control(func(fd uintptr) {
		ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(i)}
		cerr = unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, int(fd), &ev)
	})
	if err != nil {
		return err
	}
	if cerr != nil {
		return os.NewSyscallError("epoll_ctl", cerr)
	}
	return nil
}

func (m *epollAcceptor) accept() (*net.TCPConn, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	rc, err := m.epoll()
	if err != nil {
		return nil, m.opError("accept", err)
	}
	// A socket found ready before needs no asking: it is accepted from
	// directly, in turn. Its own deadline and closing apply to AcceptTCP.
	if k := m.nextWaiting(); k >= 0 {
		return m.acceptFrom(k)
	}
	// Read checks the deadline, calls poll, and parks until the epoll
	// descriptor is readable for as long as poll returns false.
	// A Read that fails after Close reports the closed epoll file; say
	// what the listener's callers expect.
	err = rc.Read(m.ready)
	switch {
	case err != nil && m.isClosed():
		return nil, m.opError("accept", net.ErrClosed)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return nil, m.opError("accept", os.ErrDeadlineExceeded)
	case err != nil:
		return nil, m.opError("accept", err)
	case m.werr != nil:
		return nil, m.opError("accept", os.NewSyscallError("epoll_wait", m.werr))
	}
	for _, ev := range m.evs[:m.n] {
		m.waiting[ev.Fd] = true
	}
	return m.acceptFrom(m.nextWaiting())
}

// nextWaiting returns the first socket marked waiting at or after m.next,
// in circular order, or -1.
func (m *epollAcceptor) nextWaiting() int {
	n := len(m.lns)
	for i := range n {
		if k := (m.next + i) % n; m.waiting[k] {
			return k
		}
	}
	return -1
}

func (m *epollAcceptor) acceptFrom(k int) (*net.TCPConn, error) {
	m.waiting[k] = false
	m.next = (k + 1) % len(m.lns)
	return m.lns[k].AcceptTCP()
}

func (m *epollAcceptor) isClosed() bool {
	m.epMu.Lock()
	defer m.epMu.Unlock()
	return m.closed
}

// poll asks the epoll descriptor, without waiting, which sockets have
// connections, and reports whether Accept can go on.
func (m *epollAcceptor) poll(fd uintptr) bool {
	for {
		m.n, m.werr = unix.EpollWait(int(fd), m.evs, 0)
		if m.werr != unix.EINTR {
			return m.n > 0 || m.werr != nil
		}
	}
}

func (m *epollAcceptor) close() error {
	m.epMu.Lock()
	if m.closed {
		m.epMu.Unlock()
		return m.opError("close", net.ErrClosed)
	}
	m.closed = true
	// Closing the epoll descriptor wakes a parked Accept; closing the
	// sockets wakes one that is past the wait.
	if m.ep != nil {
		m.ep.Close()
	}
	m.epMu.Unlock()
	return closeAll(m.lns)
}

func (m *epollAcceptor) setDeadline(t time.Time) error {
	m.epMu.Lock()
	defer m.epMu.Unlock()
	if m.closed {
		return m.opError("set", net.ErrClosed)
	}
	m.deadline = t
	if m.ep != nil {
		if err := m.ep.SetReadDeadline(t); err != nil {
			return m.opError("set", err)
		}
	}
	for _, ln := range m.lns {
		if err := ln.SetDeadline(t); err != nil {
			return err
		}
	}
	return nil
}

func (m *epollAcceptor) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Addr: m.addr, Err: err}
}
