//go:build linux || darwin || dragonfly || freebsd || netbsd || openbsd

package dualstack

import (
	"errors"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// newAcceptor makes the acceptor of a listener on several sockets.
var newAcceptor = newPollAcceptor

// newPacketReader makes the reader of a PacketConn on several sockets.
var newPacketReader = newPollReader

// poller waits for any of several sockets to become readable: for a
// listening socket, that a connection is waiting. It is an epoll
// descriptor on Linux (poll_linux.go) and a kqueue elsewhere
// (poll_kqueue.go). One wait runs at a time; setDeadline and close may be
// called at any time, and a waiting wait sees them.
//
// newPoller(conns, drains) makes one. A caller that drains, that is tries
// every socket until it would block before each wait, may be told of
// changes only: on Linux the sockets are then held edge-triggered, so that
// a UDP socket's error queue (IP_RECVERR, timestamps, zero-copy
// completions), which keeps EPOLLERR raised until it is read with
// MSG_ERRQUEUE, wakes a wait once for each error and not for ever.
// Otherwise they are held level-triggered: pollAcceptor accepts one
// connection a wait and relies on being told again of the others.
type poller interface {
	// wait marks in ready the sockets, by index, that are readable,
	// waiting until one is. It fails with os.ErrDeadlineExceeded once the
	// deadline has passed and with net.ErrClosed once the poller is
	// closed.
	wait(ready []bool) error
	// setDeadline sets the deadline of wait; the zero time means none.
	setDeadline(t time.Time) error
	// close closes the poller's descriptors once no wait uses them.
	close() error
}

// pollAcceptor accepts on several sockets in the caller's goroutine: it
// asks a poller which sockets have connections waiting, or waits until one
// does, and accepts from the first ready socket after the one it served
// last. One Accept runs at a time, so a socket found ready still has its
// connection when accepted. The poller is made on the first Accept: a
// listener that only holds a port costs no more.
type pollAcceptor struct {
	lns  []*net.TCPListener
	addr net.Addr // for errors

	mu sync.Mutex // serializes accepts; guards the fields below
	p  poller
	// ready marks the sockets that the last wait found ready and that
	// have not been accepted from since: each still has a connection,
	// since no one else accepts on them.
	ready []bool
	next  int // the socket to look at first

	stMu     sync.Mutex // guards pp, deadline and closed; never held while waiting
	pp       poller     // p, once made
	deadline time.Time
	closed   bool
}

func newPollAcceptor(lns []*net.TCPListener, addr net.Addr) (acceptor, error) {
	return &pollAcceptor{lns: lns, addr: addr, ready: make([]bool, len(lns))}, nil
}

// poller returns the poller, making it on first use. It is called with
// m.mu held.
func (m *pollAcceptor) poller() (poller, error) {
	if m.p != nil {
		return m.p, nil
	}
	m.stMu.Lock()
	defer m.stMu.Unlock()
	if m.closed {
		return nil, net.ErrClosed
	}
	conns := make([]syscall.Conn, len(m.lns))
	for i, ln := range m.lns {
		conns[i] = ln
	}
	p, err := newPoller(conns, false)
	if err != nil {
		return nil, err
	}
	if !m.deadline.IsZero() {
		p.setDeadline(m.deadline)
	}
	m.p, m.pp = p, p
	return p, nil
}

func (m *pollAcceptor) accept() (*net.TCPConn, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, err := m.poller()
	if err != nil {
		return nil, m.opError("accept", err)
	}
	// A socket found ready before needs no asking: it is accepted from
	// directly, in turn. Its own deadline and closing apply to AcceptTCP.
	if k := m.nextReady(); k >= 0 {
		return m.acceptFrom(k)
	}
	err = p.wait(m.ready)
	switch {
	case err != nil && m.isClosed():
		return nil, m.opError("accept", net.ErrClosed)
	case err != nil:
		return nil, m.opError("accept", err)
	}
	return m.acceptFrom(m.nextReady())
}

// nextReady returns the first socket marked ready at or after m.next, in
// circular order, or -1.
func (m *pollAcceptor) nextReady() int {
	n := len(m.lns)
	for i := range n {
		if k := (m.next + i) % n; m.ready[k] {
			return k
		}
	}
	return -1
}

func (m *pollAcceptor) acceptFrom(k int) (*net.TCPConn, error) {
	m.ready[k] = false
	m.next = (k + 1) % len(m.lns)
	return m.lns[k].AcceptTCP()
}

func (m *pollAcceptor) isClosed() bool {
	m.stMu.Lock()
	defer m.stMu.Unlock()
	return m.closed
}

func (m *pollAcceptor) close() error {
	m.stMu.Lock()
	if m.closed {
		m.stMu.Unlock()
		return m.opError("close", net.ErrClosed)
	}
	m.closed = true
	// Closing the poller wakes a waiting Accept; closing the sockets
	// wakes one that is past the wait.
	if m.pp != nil {
		m.pp.close()
	}
	m.stMu.Unlock()
	return closeAll(m.lns)
}

func (m *pollAcceptor) setDeadline(t time.Time) error {
	m.stMu.Lock()
	defer m.stMu.Unlock()
	if m.closed {
		return m.opError("set", net.ErrClosed)
	}
	m.deadline = t
	if m.pp != nil {
		if err := m.pp.setDeadline(t); err != nil {
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

func (m *pollAcceptor) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Addr: m.addr, Err: err}
}

// waitError is what a wait whose own descriptor failed reports: the
// deadline and closing as the poller interface says.
func waitError(err error) error {
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return os.ErrDeadlineExceeded
	case errors.Is(err, os.ErrClosed), errors.Is(err, net.ErrClosed):
		return net.ErrClosed
	}
	return err
}
