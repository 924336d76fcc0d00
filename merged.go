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

// fanIn gathers what several goroutines produce, one a source, each
// queueing at most one item; get takes from the queues in turn, starting
// after the one it took from last. A shared channel would not do: the
// scheduler runs the goroutine it woke last first, and that one would win
// every time. Even so, which source a waiting get is served from follows
// the Go scheduler, so under a tight loop one source can be served alone
// for up to a scheduling time slice. Where the OS has epoll or kqueue,
// pollAcceptor and pollReader are used instead.
type fanIn[T any] struct {
	queues []chan T      // one a source, of capacity 1
	ready  chan struct{} // capacity 1: some queue may have an item
	next   atomic.Uint32 // the queue to look at first
	done   chan struct{} // closed by close
	dl     deadline

	started atomic.Bool
	mu      sync.Mutex // guards closed and the start of the goroutines
	closed  bool
	wg      sync.WaitGroup
}

func newFanIn[T any](sources int) *fanIn[T] {
	f := &fanIn[T]{
		ready: make(chan struct{}, 1),
		done:  make(chan struct{}),
		dl:    deadline{c: make(chan struct{})},
	}
	for range sources {
		f.queues = append(f.queues, make(chan T, 1))
	}
	return f
}

// get returns the next item, starting the sources with run(i) on first use
// so that nothing is taken from the kernel before it is asked for. Its
// errors are net.ErrClosed and os.ErrDeadlineExceeded; a closed fan-in or
// a passed deadline wins over a waiting item, as on a socket.
func (f *fanIn[T]) get(run func(i int)) (T, error) {
	var zero T
	expired := f.dl.wait()
	select {
	case <-f.done:
		return zero, net.ErrClosed
	case <-expired:
		return zero, os.ErrDeadlineExceeded
	default:
	}
	if !f.started.Load() {
		f.start(run)
	}
	for {
		if v, ok := f.take(); ok {
			return v, nil
		}
		select {
		case <-f.ready:
		case <-f.done:
			return zero, net.ErrClosed
		case <-expired:
			return zero, os.ErrDeadlineExceeded
		}
	}
}

// take returns what the first non-empty queue holds, looking at the queues
// in turn.
func (f *fanIn[T]) take() (T, bool) {
	n := uint32(len(f.queues))
	first := f.next.Load()
	for i := range n {
		k := (first + i) % n
		select {
		case v := <-f.queues[k]:
			f.next.Store(k + 1)
			// Another get may be waiting for what is left.
			for _, q := range f.queues {
				if len(q) > 0 {
					f.signal()
					break
				}
			}
			return v, true
		default:
		}
	}
	var zero T
	return zero, false
}

func (f *fanIn[T]) signal() {
	select {
	case f.ready <- struct{}{}:
	default:
	}
}

func (f *fanIn[T]) start(run func(i int)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.started.Load() || f.closed {
		return
	}
	f.wg.Add(len(f.queues))
	for i := range f.queues {
		go func() {
			defer f.wg.Done()
			run(i)
		}()
	}
	f.started.Store(true)
}

// put queues v from source i, waiting for room; it reports false, and
// queues nothing, once the fan-in is closed.
func (f *fanIn[T]) put(i int, v T) bool {
	select {
	case f.queues[i] <- v:
		f.signal()
		return true
	case <-f.done:
		return false
	}
}

// close stops the fan-in: blocked and later gets fail. The caller then
// unblocks its sources (by closing their sockets) and calls wait.
func (f *fanIn[T]) close() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	f.closed = true
	close(f.done)
	return true
}

// wait waits for the sources to end and hands what is still queued to
// drop.
func (f *fanIn[T]) wait(drop func(T)) {
	f.wg.Wait()
	for _, q := range f.queues {
		select {
		case v := <-q:
			drop(v)
		default:
		}
	}
}

// chanAcceptor accepts on several sockets with a goroutine a socket,
// through a fanIn. It is portable; see fanIn for its order under load.
type chanAcceptor struct {
	lns  []*net.TCPListener
	addr net.Addr // for errors
	in   *fanIn[accepted]
	run  func(i int)
}

type accepted struct {
	c   *net.TCPConn
	err error
}

func newChanAcceptor(lns []*net.TCPListener, addr net.Addr) (acceptor, error) {
	m := &chanAcceptor{lns: lns, addr: addr, in: newFanIn[accepted](len(lns))}
	m.run = m.acceptLoop
	return m, nil
}

func (m *chanAcceptor) accept() (*net.TCPConn, error) {
	a, err := m.in.get(m.run)
	if err != nil {
		return nil, m.opError("accept", err)
	}
	return a.c, a.err
}

// acceptLoop accepts on socket i. It holds at most one connection beyond
// the one in its queue, so the kernel's backlog keeps the rest.
func (m *chanAcceptor) acceptLoop(i int) {
	for {
		c, err := m.lns[i].AcceptTCP()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if !m.in.put(i, accepted{c, err}) {
			if c != nil {
				c.Close()
			}
			return
		}
	}
}

func (m *chanAcceptor) close() error {
	if !m.in.close() {
		return m.opError("close", net.ErrClosed)
	}
	first := closeAll(m.lns)
	// Close what was accepted but not handed out.
	m.in.wait(func(a accepted) {
		if a.c != nil {
			a.c.Close()
		}
	})
	return first
}

func (m *chanAcceptor) setDeadline(t time.Time) error {
	select {
	case <-m.in.done:
		return m.opError("set", net.ErrClosed)
	default:
	}
	m.in.dl.set(t)
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
