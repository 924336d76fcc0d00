package main

import (
	"errors"
	"syscall"
	"time"
)

// backoff paces an accept loop after a temporary error, as http.Server
// does: it waits 5 ms, then twice as long each time up to a second, until
// an accept succeeds. Without it a loop out of descriptors (EMFILE) would
// retry, and report, hundreds of thousands of times a second.
type backoff struct{ delay time.Duration }

// retry reports whether err is temporary, after waiting if it is.
func (b *backoff) retry(err error) bool {
	if !temporary(err) {
		return false
	}
	b.delay = min(max(2*b.delay, 5*time.Millisecond), time.Second)
	time.Sleep(b.delay)
	return true
}

// ok records a successful accept.
func (b *backoff) ok() { b.delay = 0 }

// temporary reports whether an accept error passes: the process or the
// system is out of descriptors or memory for now, or a connection went
// away before it was accepted.
func temporary(err error) bool {
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM,
		syscall.ECONNABORTED, syscall.ECONNRESET, syscall.EINTR} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
