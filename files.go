package dualstack

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"syscall"
)

// Files returns a duplicate of each socket asked for, in the order of
// Addrs, as [net.TCPListener.File] does for one: closing a file leaves the
// listener open, and closing the listener leaves the files open. The files
// are what a process that inherits the listener needs ([FileListener],
// systemd's LISTEN_FDS, a graceful-restart library). Guard sockets are not
// among them: they hold addresses for this process only.
func (l *Listener) Files() ([]*os.File, error) {
	if !l.ok() {
		return nil, errZero("file", "tcp")
	}
	return files(l.lns[:len(l.addrs)], (*net.TCPListener).File)
}

// SyscallConns returns the raw connection of each socket asked for, in the
// order of Addrs, as [net.TCPListener.SyscallConn] does for one: to read or
// set a socket option on each.
func (l *Listener) SyscallConns() ([]syscall.RawConn, error) {
	if !l.ok() {
		return nil, errZero("raw-control", "tcp")
	}
	return rawConns(l.lns[:len(l.addrs)], (*net.TCPListener).SyscallConn)
}

// Files returns a duplicate of each socket asked for, in the order of
// Addrs, as [Listener.Files] does.
func (p *PacketConn) Files() ([]*os.File, error) {
	if !p.ok() {
		return nil, errZero("file", "udp")
	}
	return files(p.conns[:len(p.addrs)], (*net.UDPConn).File)
}

// SyscallConns returns the raw connection of each socket asked for, in the
// order of Addrs, as [Listener.SyscallConns] does.
func (p *PacketConn) SyscallConns() ([]syscall.RawConn, error) {
	if !p.ok() {
		return nil, errZero("raw-control", "udp")
	}
	return rawConns(p.conns[:len(p.addrs)], (*net.UDPConn).SyscallConn)
}

func files[T any](cs []T, file func(T) (*os.File, error)) ([]*os.File, error) {
	var fs []*os.File
	for _, c := range cs {
		f, err := file(c)
		if err != nil {
			closeAll(fs)
			return nil, err
		}
		fs = append(fs, f)
	}
	return fs, nil
}

func rawConns[T any](cs []T, raw func(T) (syscall.RawConn, error)) ([]syscall.RawConn, error) {
	var rcs []syscall.RawConn
	for _, c := range cs {
		rc, err := raw(c)
		if err != nil {
			return nil, err
		}
		rcs = append(rcs, rc)
	}
	return rcs, nil
}

var (
	errNoFiles       = errors.New("dualstack: no files")
	errNotListening  = errors.New("dualstack: a socket is not listening")
	errSeveralPorts  = errors.New("dualstack: the sockets are not on one port")
	errSameAddress   = errors.New("dualstack: two sockets are on one address")
	errNotIP         = errors.New("dualstack: a socket is not an IP socket")
	errDualWithOther = errors.New("dualstack: a dual-stack socket cannot serve with others")
)

// FileListener makes a Listener of listening TCP sockets that this process
// inherited (systemd's LISTEN_FDS, a parent process, [Listener.Files]),
// as [net.FileListener] does for one. It duplicates each file; the caller
// closes the files. The sockets must be listening, on one port, each on an
// address of its own; a single AF_INET6 socket on [::] with IPV6_V6ONLY
// cleared is Single mode, and its IPv4 peers are reported unmapped. Accept
// then serves the sockets as it serves those of Listen. The sockets are
// taken as they are: FileListener binds nothing and adds no guard.
func FileListener(files ...*os.File) (*Listener, error) {
	lns, err := fromFiles(files, func(f *os.File) (*net.TCPListener, error) {
		ln, err := net.FileListener(f)
		if err != nil {
			return nil, err
		}
		if tl, ok := ln.(*net.TCPListener); ok {
			return tl, nil
		}
		ln.Close()
		return nil, fmt.Errorf("%s: %w", f.Name(), errNotIP)
	}, func(ln *net.TCPListener) net.Addr { return ln.Addr() }, (*net.TCPListener).SyscallConn, true)
	if err != nil {
		return nil, &net.OpError{Op: "file", Net: "tcp", Err: err}
	}
	h, mode := lns.handedOver()
	l, err := newListener(hostSystem, h, mode, keepAlive{})
	if err != nil {
		return nil, &net.OpError{Op: "file", Net: "tcp", Err: err}
	}
	return l, nil
}

// FilePacketConn makes a PacketConn of UDP sockets that this process
// inherited, as [FileListener] does of TCP ones: bound, on one port, each
// on an address of its own.
func FilePacketConn(files ...*os.File) (*PacketConn, error) {
	conns, err := fromFiles(files, func(f *os.File) (*net.UDPConn, error) {
		c, err := net.FilePacketConn(f)
		if err != nil {
			return nil, err
		}
		if uc, ok := c.(*net.UDPConn); ok {
			return uc, nil
		}
		c.Close()
		return nil, fmt.Errorf("%s: %w", f.Name(), errNotIP)
	}, (*net.UDPConn).LocalAddr, (*net.UDPConn).SyscallConn, false)
	if err != nil {
		return nil, &net.OpError{Op: "file", Net: "udp", Err: err}
	}
	h, mode := conns.handedOver()
	pc, err := newPacketConn(hostSystem, h, mode, "udp")
	if err != nil {
		return nil, &net.OpError{Op: "file", Net: "udp", Err: err}
	}
	return pc, nil
}

// inherited are the sockets of FileListener or FilePacketConn, IPv4 first.
type inherited[T interface{ Close() error }] struct {
	conns []T
	eps   []endpoint
}

func (in inherited[T]) handedOver() (handedOver[T], Mode) {
	mode := Separate
	if len(in.eps) == 1 && in.eps[0].dual {
		mode = Single
	}
	return handedOver[T]{conns: in.conns, eps: in.eps, asked: len(in.conns)}, mode
}

// fromFiles turns files into connections with conv and checks them: IP
// sockets, listening (listening), on one port, each on an address of its
// own, a dual-stack one alone. On error it closes what it made.
func fromFiles[T interface{ Close() error }](files []*os.File, conv func(*os.File) (T, error),
	addr func(T) net.Addr, raw func(T) (syscall.RawConn, error), listening bool) (in inherited[T], err error) {
	defer func() {
		if err != nil {
			closeAll(in.conns)
			in = inherited[T]{}
		}
	}()
	if len(files) == 0 {
		return in, errNoFiles
	}
	var port uint16
	for _, f := range files {
		if f == nil {
			return in, errNoFiles
		}
		c, err := conv(f)
		if err != nil {
			return in, err
		}
		in.conns = append(in.conns, c)
		ap, ok := netipAddrPort(addr(c))
		if !ok {
			return in, fmt.Errorf("%s: %w", f.Name(), errNotIP)
		}
		rc, err := raw(c)
		if err != nil {
			return in, err
		}
		if listening {
			on, err := sockoptOn(rc, solSocket, soAcceptConn)
			if err != nil {
				return in, fmt.Errorf("%s: %w", f.Name(), err)
			}
			if !on {
				return in, fmt.Errorf("%s (%v): %w", f.Name(), ap, errNotListening)
			}
		}
		ep := endpoint{addr: ap.Addr().Unmap()}
		if ep.addr.Is6() && ep.addr.IsUnspecified() {
			v6only, err := sockoptOn(rc, ipprotoIPv6, ipv6V6Only)
			if err != nil {
				return in, fmt.Errorf("%s: %w", f.Name(), err)
			}
			ep.dual = !v6only
		}
		switch {
		case port != 0 && ap.Port() != port:
			return in, fmt.Errorf("%w: %d and %d", errSeveralPorts, port, ap.Port())
		case slices.ContainsFunc(in.eps, func(e endpoint) bool { return e.addr == ep.addr }):
			return in, fmt.Errorf("%w: %v", errSameAddress, ep.addr)
		}
		port = ap.Port()
		in.eps = append(in.eps, ep)
	}
	if len(in.eps) > 1 && slices.ContainsFunc(in.eps, func(e endpoint) bool { return e.dual }) {
		return in, errDualWithOther
	}
	// IPv4 first, as Listen orders them.
	order := make([]int, len(in.eps))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(in.eps[a].family(), in.eps[b].family()) })
	var sorted inherited[T]
	for _, i := range order {
		sorted.conns = append(sorted.conns, in.conns[i])
		sorted.eps = append(sorted.eps, in.eps[i])
	}
	return sorted, nil
}

// netipAddrPort is the address of a TCP or UDP net.Addr.
func netipAddrPort(a net.Addr) (netip.AddrPort, bool) {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.AddrPort(), true
	case *net.UDPAddr:
		return a.AddrPort(), true
	}
	return netip.AddrPort{}, false
}
