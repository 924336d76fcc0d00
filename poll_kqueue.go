//go:build darwin || dragonfly || freebsd || netbsd || openbsd

package dualstack

import (
	"net"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// kqueuePoller is the poller of macOS and the BSDs: a kqueue holding the
// sockets (EVFILT_READ, level-triggered) and the read end of a pipe that
// setDeadline and close write to, to wake a waiting wait.
//
// wait blocks in kevent(2) in the caller's goroutine, which holds one
// thread while it waits, as a blocking system call does. The kqueue cannot
// be registered with the runtime's poller as Linux's epoll descriptor is:
// the runtime registers only descriptors in non-blocking mode, and FreeBSD
// refuses O_NONBLOCK on a kqueue (fcntl(F_SETFL) fails with ENOTTY, seen
// on FreeBSD 15.1; XNU's kqueue has no ioctl either).
type kqueuePoller struct {
	kq    int
	wake  [2]int // the pipe: read end, write end
	fds   []int  // of the sockets, by index
	evs   []unix.Kevent_t
	drain [16]byte

	mu       sync.Mutex // guards the fields below
	deadline time.Time
	closed   bool
	waiting  bool // a wait is in kevent(2); it releases the descriptors if closed
}

// yields is how many times wait lets other goroutines run, looking again
// each time, before it waits in kevent(2).
const yields = 4

var zero unix.Timespec

// newPoller holds the sockets level-triggered whether or not the caller
// drains: the BSDs keep no error queue, and recvfrom(2) reports and clears
// a socket's pending error (so_error) at once.
func newPoller(conns []syscall.Conn, _ bool) (poller, error) {
	p := &kqueuePoller{kq: -1, wake: [2]int{-1, -1}, evs: make([]unix.Kevent_t, len(conns)+1)}
	if err := p.open(conns); err != nil {
		p.release()
		return nil, err
	}
	return p, nil
}

func (p *kqueuePoller) open(conns []syscall.Conn) error {
	// Hold ForkLock so that no child inherits the descriptors before they
	// are marked close-on-exec.
	syscall.ForkLock.RLock()
	kq, err := unix.Kqueue()
	if err == nil {
		p.kq = kq
		unix.CloseOnExec(kq)
		err = unix.Pipe(p.wake[:])
		if err == nil {
			unix.CloseOnExec(p.wake[0])
			unix.CloseOnExec(p.wake[1])
		} else {
			p.wake = [2]int{-1, -1}
		}
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return os.NewSyscallError("kqueue", err)
	}
	for _, fd := range p.wake {
		if err := unix.SetNonblock(fd, true); err != nil {
			return os.NewSyscallError("setnonblock", err)
		}
	}
	changes := make([]unix.Kevent_t, 0, len(conns)+1)
	add := func(fd int) {
		var ev unix.Kevent_t
		unix.SetKevent(&ev, fd, unix.EVFILT_READ, unix.EV_ADD)
		changes = append(changes, ev)
	}
	for _, c := range conns {
		rc, err := c.SyscallConn()
		if err != nil {
			return err
		}
		if err := rc.Control(func(fd uintptr) { p.fds = append(p.fds, int(fd)) }); err != nil {
			return err
		}
		add(p.fds[len(p.fds)-1])
	}
	add(p.wake[0])
	if _, err := unix.Kevent(p.kq, changes, nil, nil); err != nil {
		return os.NewSyscallError("kevent", err)
	}
	return nil
}

func (p *kqueuePoller) wait(ready []bool) error {
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return net.ErrClosed
		}
		var ts *unix.Timespec
		if !p.deadline.IsZero() {
			left := time.Until(p.deadline)
			if left <= 0 {
				p.mu.Unlock()
				return os.ErrDeadlineExceeded
			}
			t := unix.NsecToTimespec(int64(left))
			ts = &t
		}
		p.waiting = true
		p.mu.Unlock()

		// Before waiting in the kernel, which gives up this goroutine's
		// processor until the system call returns, let the goroutines that
		// are ready run a few times and look again: a client in this
		// process, or any work that yields, often brings the connection.
		n, err := 0, error(nil)
		for range yields {
			runtime.Gosched()
			if n, err = unix.Kevent(p.kq, nil, p.evs, &zero); n != 0 || err != nil {
				break
			}
		}
		if n == 0 && err == nil {
			n, err = unix.Kevent(p.kq, nil, p.evs, ts)
		}

		p.mu.Lock()
		p.waiting = false
		if p.closed {
			p.release()
			p.mu.Unlock()
			return net.ErrClosed
		}
		p.mu.Unlock()
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return os.NewSyscallError("kevent", err)
		}
		found := false
		for _, ev := range p.evs[:n] {
			fd := int(ev.Ident)
			if fd == p.wake[0] {
				for {
					if k, err := unix.Read(fd, p.drain[:]); k <= 0 || err != nil {
						break
					}
				}
				continue
			}
			for i, sfd := range p.fds {
				if sfd == fd {
					ready[i], found = true, true
				}
			}
		}
		if found {
			return nil
		}
		// Woken, or the deadline passed: look again.
	}
}

// interrupt wakes a waiting wait. It is called with p.mu held, so that the
// pipe is still open.
func (p *kqueuePoller) interrupt() {
	if p.waiting {
		unix.Write(p.wake[1], []byte{0})
	}
}

func (p *kqueuePoller) setDeadline(t time.Time) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return net.ErrClosed
	}
	p.deadline = t
	p.interrupt()
	return nil
}

// close closes the descriptors now, or has the waiting wait close them
// once it leaves kevent(2), so that no descriptor number is reused while
// it is in use.
func (p *kqueuePoller) close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return net.ErrClosed
	}
	p.closed = true
	if p.waiting {
		p.interrupt()
	} else {
		p.release()
	}
	return nil
}

// release closes the descriptors.
func (p *kqueuePoller) release() {
	for _, fd := range []int{p.kq, p.wake[0], p.wake[1]} {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
	p.kq, p.wake = -1, [2]int{-1, -1}
}
