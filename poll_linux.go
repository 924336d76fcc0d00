package dualstack

import (
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// epoller is the poller of Linux: an epoll descriptor holding the sockets
// (edge-triggered for a caller that drains, see poller), itself registered
// with the runtime's poller. wait asks
// it without waiting and parks on the runtime's poller until it is
// readable, so a waiting Accept or read holds no thread.
type epoller struct {
	ep   *os.File
	rc   syscall.RawConn
	evs  []unix.EpollEvent
	n    int   // events in evs
	werr error // error of epoll_wait
	poll func(fd uintptr) bool
}

// pollCalls counts the calls of epoll_wait(2), for the tests: a wait that
// parks makes one or two.
var pollCalls atomic.Uint64

// newPoller returns an epoll descriptor, registered with the runtime's
// poller, on which the sockets of conns are registered for reading, each
// under its index; edge-triggered if the caller drains.
func newPoller(conns []syscall.Conn, drains bool) (poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	for i, c := range conns {
		if err := epollAdd(epfd, c, i, drains); err != nil {
			unix.Close(epfd)
			return nil, err
		}
	}
	// Non-blocking, so that os.NewFile registers it with the poller.
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		return nil, os.NewSyscallError("setnonblock", err)
	}
	ep := os.NewFile(uintptr(epfd), "dualstack-epoll")
	rc, err := ep.SyscallConn()
	if err != nil {
		ep.Close()
		return nil, err
	}
	e := &epoller{ep: ep, rc: rc, evs: make([]unix.EpollEvent, len(conns))}
	e.poll = e.pollNow // made once: a method value allocates
	return e, nil
}

// epollAdd registers the socket of c with epfd under the index i.
func epollAdd(epfd int, c syscall.Conn, i int, edge bool) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var cerr error
	err = rc.Control(func(fd uintptr) {
		ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(i)}
		if edge {
			ev.Events |= unix.EPOLLET
		}
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

func (e *epoller) wait(ready []bool) error {
	// Read checks the deadline, calls pollNow, and parks until the epoll
	// descriptor is readable for as long as pollNow returns false.
	if err := e.rc.Read(e.poll); err != nil {
		return waitError(err)
	}
	if e.werr != nil {
		return os.NewSyscallError("epoll_wait", e.werr)
	}
	for _, ev := range e.evs[:e.n] {
		ready[ev.Fd] = true
	}
	return nil
}

// pollNow asks the epoll descriptor, without waiting, which sockets are
// readable, and reports whether wait can return.
func (e *epoller) pollNow(fd uintptr) bool {
	pollCalls.Add(1)
	for {
		e.n, e.werr = unix.EpollWait(int(fd), e.evs, 0)
		if e.werr != unix.EINTR {
			return e.n > 0 || e.werr != nil
		}
	}
}

func (e *epoller) setDeadline(t time.Time) error { return e.ep.SetReadDeadline(t) }

// close closes the epoll descriptor; the runtime's poller wakes a waiting
// wait, and the descriptor is released once it has returned.
func (e *epoller) close() error { return e.ep.Close() }
