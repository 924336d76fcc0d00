//go:build unix

package dualstack

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// sysSockets is the host's socket layer.
type sysSockets struct{}

var hostSockets socketAPI = sysSockets{}

// defaultBacklog is the listen backlog where the OS tells no other.
const defaultBacklog = unix.SOMAXCONN

// sysSocket is a socket descriptor that is not yet a net listener.
type sysSocket struct {
	fd int
	o  sockOpts
}

func (sysSockets) socket(o sockOpts) (socket, error) {
	af, typ := unix.AF_INET, unix.SOCK_STREAM
	if o.family == inet6 {
		af = unix.AF_INET6
	}
	if o.proto == udp {
		typ = unix.SOCK_DGRAM
	}
	protocol := 0
	if o.mptcp {
		protocol = mptcpProto
	}
	fd, err := newSocket(af, typ, protocol)
	if err != nil && protocol != 0 {
		// As net falls back to TCP where MPTCP is missing or refused
		// (EPROTONOSUPPORT, EINVAL before Linux 5.6, ENOPROTOOPT with
		// net.mptcp.enabled=0): on any error.
		fd, err = newSocket(af, typ, 0)
	}
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	s := &sysSocket{fd: fd, o: o}
	if err := s.setOptions(); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return s, nil
}

// newSocket creates a socket that no child process inherits.
func newSocket(af, typ, protocol int) (int, error) {
	if sockCloexec != 0 {
		return unix.Socket(af, typ|sockCloexec, protocol)
	}
	// Hold ForkLock so that no child inherits the descriptor before it is
	// marked close-on-exec.
	syscall.ForkLock.RLock()
	defer syscall.ForkLock.RUnlock()
	fd, err := unix.Socket(af, typ, protocol)
	if err == nil {
		unix.CloseOnExec(fd)
	}
	return fd, err
}

func (s *sysSocket) setOptions() error {
	if s.o.family == inet6 {
		if err := unix.SetsockoptInt(s.fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, boolint(s.o.v6only)); err != nil {
			return os.NewSyscallError("setsockopt", err)
		}
	}
	if s.o.reuseAddr {
		if err := unix.SetsockoptInt(s.fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
			return os.NewSyscallError("setsockopt", err)
		}
	}
	if s.o.proto == udp {
		// As Go's net package does for every datagram socket.
		if err := unix.SetsockoptInt(s.fd, unix.SOL_SOCKET, unix.SO_BROADCAST, 1); err != nil {
			return os.NewSyscallError("setsockopt", err)
		}
	}
	return nil
}

func (s *sysSocket) bind(a netip.AddrPort) (uint16, error) {
	if s.o.control != nil {
		if err := s.o.control(s.o.proto.network(s.o.family), a.String(), rawConn(s.fd)); err != nil {
			return 0, err
		}
		if s.o.private {
			if err := s.checkNotShared(); err != nil {
				return 0, err
			}
		}
	}
	sa, err := sockaddr(a)
	if err != nil {
		return 0, err
	}
	if err := unix.Bind(s.fd, sa); err != nil {
		return 0, os.NewSyscallError("bind", err)
	}
	if a.Port() != 0 {
		return a.Port(), nil
	}
	got, err := unix.Getsockname(s.fd)
	if err != nil {
		return 0, os.NewSyscallError("getsockname", err)
	}
	switch got := got.(type) {
	case *unix.SockaddrInet4:
		return uint16(got.Port), nil
	case *unix.SockaddrInet6:
		return uint16(got.Port), nil
	}
	return 0, os.NewSyscallError("getsockname", unix.EAFNOSUPPORT)
}

// checkNotShared reads back the options that let another socket share the
// port, after the user's Control: none may be on but SO_REUSEADDR where we
// set it. (The BSDs answer a boolean option with its flag, not 1.)
func (s *sysSocket) checkNotShared() error {
	opts := sharingOptions
	if !s.o.reuseAddr {
		opts = append([]sockOption{{unix.SO_REUSEADDR, "SO_REUSEADDR"}}, opts...)
	}
	for _, o := range opts {
		v, err := unix.GetsockoptInt(s.fd, unix.SOL_SOCKET, o.opt)
		if err != nil {
			return os.NewSyscallError("getsockopt", err)
		}
		if v != 0 {
			return controlSharingError{o.name}
		}
	}
	return nil
}

func (s *sysSocket) listen() error {
	if s.o.proto != tcp {
		return nil
	}
	if err := unix.Listen(s.fd, listenBacklog()); err != nil {
		return os.NewSyscallError("listen", err)
	}
	return nil
}

func (s *sysSocket) close() error {
	return unix.Close(s.fd)
}

// tcpListener hands the descriptor to the net package. net.FileListener
// keeps a duplicate, so the original is closed whatever happens.
func (s *sysSocket) tcpListener() (*net.TCPListener, error) {
	f := os.NewFile(uintptr(s.fd), "")
	ln, err := net.FileListener(f)
	f.Close()
	if err != nil {
		return nil, handOverError("net.FileListener", err)
	}
	return ln.(*net.TCPListener), nil
}

// udpConn hands the descriptor to the net package, as tcpListener does.
func (s *sysSocket) udpConn() (*net.UDPConn, error) {
	f := os.NewFile(uintptr(s.fd), "")
	pc, err := net.FilePacketConn(f)
	f.Close()
	if err != nil {
		return nil, handOverError("net.FilePacketConn", err)
	}
	return pc.(*net.UDPConn), nil
}

// handOverError is the failure of the net package's call: its own
// *net.OpError names a file without a name ("file file+net : fcntl: ..."),
// so only its cause is kept, under the call's name.
func handOverError(call string, err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) {
		err = oe.Err
	}
	return fmt.Errorf("%s: %w", call, err)
}

// sockaddr converts an address to the kernel's form, resolving a zone name
// to its interface index.
func sockaddr(a netip.AddrPort) (unix.Sockaddr, error) {
	ip := a.Addr()
	if ip.Is4() {
		return &unix.SockaddrInet4{Port: int(a.Port()), Addr: ip.As4()}, nil
	}
	sa := &unix.SockaddrInet6{Port: int(a.Port()), Addr: ip.As16()}
	if zone := ip.Zone(); zone != "" {
		id, err := zoneIndex(zone)
		if err != nil {
			return nil, err
		}
		sa.ZoneId = id
	}
	return sa, nil
}

// zoneIndex reads a zone as net does (zoneCache.index): an interface's
// name, else a number, else nothing (0), which leaves the kernel to refuse
// an address that needs a zone.
func zoneIndex(zone string) (uint32, error) {
	if ifi, err := net.InterfaceByName(zone); err == nil {
		return uint32(ifi.Index), nil
	}
	n, _ := strconv.ParseUint(zone, 10, 32)
	return uint32(n), nil
}

// rawConn gives the user's Control the descriptor of a socket that is not
// yet bound. Only Control is meaningful before bind.
type rawConn int

func (c rawConn) Control(f func(fd uintptr)) error {
	f(uintptr(c))
	return nil
}

func (rawConn) Read(func(fd uintptr) bool) error  { return errUnboundIO }
func (rawConn) Write(func(fd uintptr) bool) error { return errUnboundIO }

var errUnboundIO = errors.New("dualstack: no I/O on a socket that is not yet bound")

// addrInUse reports whether err means that the address is taken.
func addrInUse(err error) bool { return errors.Is(err, unix.EADDRINUSE) }

// notAssignable reports whether err says that no interface has the address.
func notAssignable(err error) bool { return errors.Is(err, unix.EADDRNOTAVAIL) }

// accessDenied reports whether err is a refusal for access.
func accessDenied(err error) bool { return errors.Is(err, unix.EACCES) }

// unservable reports whether err means that the host cannot serve a family
// here: no sockets of the family at all, or an address of it (such as ::1
// with disable_ipv6=1, or 127.0.0.1 removed from lo) that cannot be
// assigned.
func unservable(err error) bool {
	return errors.Is(err, unix.EAFNOSUPPORT) || errors.Is(err, unix.EADDRNOTAVAIL)
}

func boolint(b bool) int {
	if b {
		return 1
	}
	return 0
}
