package dualstack

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"syscall"
)

// sysSockets is the host's socket layer. On Windows it goes through
// net.ListenConfig, whose sockets are registered with the I/O completion
// port that the net package needs; so a socket is bound and starts
// listening in one step, at bind. Untested here: it is cross-compiled.
type sysSockets struct{}

var hostSockets socketAPI = sysSockets{}

// defaultBacklog is the listen backlog where the OS tells no other.
const defaultBacklog = syscall.SOMAXCONN

// soExclusiveAddrUse is SO_EXCLUSIVEADDRUSE, defined by Winsock as
// ~SO_REUSEADDR.
const soExclusiveAddrUse = ^syscall.SO_REUSEADDR

// wsaeAddrInUse and friends are the Winsock error codes.
const (
	wsaeAddrInUse    = syscall.Errno(10048)
	wsaeAddrNotAvail = syscall.Errno(10049)
	wsaeAFNoSupport  = syscall.Errno(10047)
)

type sysSocket struct {
	o  sockOpts
	ln net.Listener
	pc net.PacketConn
}

func (sysSockets) socket(o sockOpts) (socket, error) { return &sysSocket{o: o}, nil }

func (s *sysSocket) bind(a netip.AddrPort) (uint16, error) {
	lc := net.ListenConfig{Control: s.control}
	network := s.o.proto.network(s.o.family)
	var (
		addr net.Addr
		err  error
	)
	if s.o.proto == udp {
		s.pc, err = lc.ListenPacket(context.Background(), network, a.String())
		if err == nil {
			addr = s.pc.LocalAddr()
		}
	} else {
		s.ln, err = lc.Listen(context.Background(), network, a.String())
		if err == nil {
			addr = s.ln.Addr()
		}
	}
	if err != nil {
		// The caller wraps the error in its own *net.OpError.
		if oe, ok := err.(*net.OpError); ok {
			err = oe.Err
		}
		return 0, err
	}
	switch addr := addr.(type) {
	case *net.TCPAddr:
		return uint16(addr.Port), nil
	case *net.UDPAddr:
		return uint16(addr.Port), nil
	}
	return 0, errors.New("dualstack: unexpected local address " + addr.String())
}

func (s *sysSocket) control(network, address string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		h := syscall.Handle(fd)
		if s.o.family == inet6 {
			serr = syscall.SetsockoptInt(h, syscall.IPPROTO_IPV6, syscall.IPV6_V6ONLY, boolint(s.o.v6only))
		}
		if serr == nil && s.o.exclusive {
			serr = syscall.SetsockoptInt(h, syscall.SOL_SOCKET, soExclusiveAddrUse, 1)
		}
		if serr == nil && s.o.reuseAddr {
			serr = syscall.SetsockoptInt(h, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
		}
	})
	if err != nil {
		return err
	}
	if serr != nil {
		return serr
	}
	if s.o.control != nil {
		return s.o.control(network, address, c)
	}
	return nil
}

// listen does nothing: bind has already started listening.
func (s *sysSocket) listen() error { return nil }

func (s *sysSocket) close() error {
	switch {
	case s.ln != nil:
		return s.ln.Close()
	case s.pc != nil:
		return s.pc.Close()
	}
	return nil
}

func (s *sysSocket) tcpListener() (*net.TCPListener, error) {
	ln, ok := s.ln.(*net.TCPListener)
	if !ok {
		return nil, errors.New("dualstack: not a TCP listener")
	}
	return ln, nil
}

func (s *sysSocket) udpConn() (*net.UDPConn, error) {
	pc, ok := s.pc.(*net.UDPConn)
	if !ok {
		return nil, errors.New("dualstack: not a UDP socket")
	}
	return pc, nil
}

// addrInUse reports whether err means that the address is taken.
func addrInUse(err error) bool {
	return errors.Is(err, wsaeAddrInUse) || errors.Is(err, syscall.EADDRINUSE)
}

// accessDenied reports whether err is a refusal for access: WSAEACCES.
func accessDenied(err error) bool {
	return errors.Is(err, syscall.Errno(10013)) || errors.Is(err, syscall.EACCES)
}

// unservable reports whether err means that the host cannot serve a family
// here.
func unservable(err error) bool {
	return errors.Is(err, wsaeAFNoSupport) || errors.Is(err, wsaeAddrNotAvail)
}

func boolint(b bool) int {
	if b {
		return 1
	}
	return 0
}

// notAssignable reports whether err says that no interface has the address.
func notAssignable(err error) bool { return errors.Is(err, wsaeAddrNotAvail) }
