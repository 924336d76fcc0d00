package dualstack

import (
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// acceptor accepts on several sockets as one listener, as the Listener's
// documentation says: from whichever socket has a connection, no socket
// starving another; temporary errors passed on as the socket's own
// *net.OpError; net.ErrClosed for blocked and later calls after close.
type acceptor interface {
	accept() (*net.TCPConn, error)
	close() error
	setDeadline(t time.Time) error
}

// chanAcceptor accepts on several sockets with a goroutine a socket, each
// accepting into a queue of one; Accept takes from the queues in turn,
// starting after the one it took from last. It is portable, but which
// socket a waiting Accept is served from follows the Go scheduler: the
// goroutine woken last tends to run first, so under a tight Accept loop one
// socket can be served alone for up to a scheduling time slice. Where the
// OS allows, epollAcceptor is used instead.
type chanAcceptor struct {
	lns    []*net.TCPListener
	addr   net.Addr        // for errors
	queues []chan accepted // one a socket, of capacity 1
	ready  chan struct{}   // capacity 1: some queue may have a connection
	next   atomic.Uint32   // the queue to look at first
	done   chan struct{}   // closed by close
	dl     deadline

	started atomic.Bool
	mu      sync.Mutex // guards closed and the start of the goroutines
	closed  bool
	wg      sync.WaitGroup
}

type accepted struct {
	c   *net.TCPConn
	err error
}

func newChanAcceptor(lns []*net.TCPListener, addr net.Addr) (acceptor, error) {
	m := &chanAcceptor{
		lns:   lns,
		addr:  addr,
		ready: make(chan struct{}, 1),
		done:  make(chan struct{}),
		dl:    deadline{c: make(chan struct{})},
	}
	for range lns {
		m.queues = append(m.queues, make(chan accepted, 1))
	}
	return m, nil
}

func (m *chanAcceptor) accept() (*net.TCPConn, error) {
	expired := m.dl.wait()
	// A closed listener or a passed deadline wins over a waiting
	// connection, as on a net.TCPListener.
	select {
	case <-m.done:
		return nil, m.opError("accept", net.ErrClosed)
	case <-expired:
		return nil, m.opError("accept", os.ErrDeadlineExceeded)
	default:
	}
	if !m.started.Load() {
		m.start()
	}
	for {
		if a, ok := m.take(); ok {
			return a.c, a.err
		}
		select {
		case <-m.ready:
		case <-m.done:
			return nil, m.opError("accept", net.ErrClosed)
		case <-expired:
			return nil, m.opError("accept", os.ErrDeadlineExceeded)
		}
	}
}

// take returns what the first non-empty queue holds, looking at the queues
// in turn.
func (m *chanAcceptor) take() (accepted, bool) {
	n := uint32(len(m.queues))
	first := m.next.Load()
	for i := range n {
		k := (first + i) % n
		select {
		case a := <-m.queues[k]:
			m.next.Store(k + 1)
			// Another Accept may be waiting for what is left.
			for _, q := range m.queues {
				if len(q) > 0 {
					m.signal()
					break
				}
			}
			return a, true
		default:
		}
	}
	return accepted{}, false
}

func (m *chanAcceptor) signal() {
	select {
	case m.ready <- struct{}{}:
	default:
	}
}

// start starts the accepting goroutines on the first Accept, so that a
// listener that is never accepted on takes no connection from the kernel.
func (m *chanAcceptor) start() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.started.Load() || m.closed {
		return
	}
	m.wg.Add(len(m.lns))
	for i, ln := range m.lns {
		go m.run(ln, m.queues[i])
	}
	m.started.Store(true)
}

// run accepts on one socket. It holds at most one connection beyond the
// one in its queue, so the kernel's backlog keeps the rest.
func (m *chanAcceptor) run(ln *net.TCPListener, q chan<- accepted) {
	defer m.wg.Done()
	for {
		c, err := ln.AcceptTCP()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		select {
		case q <- accepted{c, err}:
			m.signal()
		case <-m.done:
			if c != nil {
				c.Close()
			}
			return
		}
	}
}

func (m *chanAcceptor) close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return m.opError("close", net.ErrClosed)
	}
	m.closed = true
	m.mu.Unlock()
	close(m.done)
	var first error
	for _, ln := range m.lns {
		if err := ln.Close(); err != nil && first == nil {
			first = err
		}
	}
	m.wg.Wait()
	// Close what was accepted but not handed out.
	for _, q := range m.queues {
		select {
		case a := <-q:
			if a.c != nil {
				a.c.Close()
			}
		default:
		}
	}
	return first
}

func (m *chanAcceptor) setDeadline(t time.Time) error {
	select {
	case <-m.done:
		return m.opError("set", net.ErrClosed)
	default:
	}
	m.dl.set(t)
	return nil
}

func (m *chanAcceptor) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Addr: m.addr, Err: err}
}

// deadline is a deadline that can be moved, and wakes whoever waits on it
// when it passes.
type deadline struct {
	mu    sync.Mutex
	timer *time.Timer
	c     chan struct{} // closed once the deadline has passed
}

// wait returns a channel that is closed when the deadline passes.
func (d *deadline) wait() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.c
}

// set moves the deadline to t; the zero time removes it.
func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil && !d.timer.Stop() {
		<-d.c // the timer has fired: wait until it has closed c
	}
	d.timer = nil
	passed := isClosed(d.c)
	if !t.IsZero() && !time.Now().Before(t) {
		if !passed {
			close(d.c)
		}
		return
	}
	if passed {
		d.c = make(chan struct{})
	}
	if !t.IsZero() {
		c := d.c
		d.timer = time.AfterFunc(time.Until(t), func() { close(c) })
	}
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
