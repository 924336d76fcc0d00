package dualstack

import (
	"io"
	"net"
)

// Conn is a connection accepted in Single mode: the kernel's *[net.TCPConn],
// whose LocalAddr and RemoteAddr report IPv4 peers in their IPv4 form
// rather than IPv4-mapped. Every other method is the TCPConn's own, so
// CloseWrite, SetKeepAlive, SetKeepAliveConfig, SetLinger, SetNoDelay and
// SyscallConn work as on the TCPConn, and io.Copy between Conns, TCPConns
// and files keeps the kernel's splice and sendfile paths.
//
// A Conn is a value holding one pointer: Accept hands it out without
// allocating, and the addresses are unmapped when asked for. Separate mode
// returns *net.TCPConn itself, since IPv4 peers arrive on the IPv4 socket.
type Conn struct {
	*net.TCPConn
}

// LocalAddr returns the local address, unmapped. For an IPv4 peer it
// allocates a new address on each call.
func (c Conn) LocalAddr() net.Addr { return Unmap(c.TCPConn.LocalAddr()) }

// RemoteAddr returns the remote address, unmapped. For an IPv4 peer it
// allocates a new address on each call.
func (c Conn) RemoteAddr() net.Addr { return Unmap(c.TCPConn.RemoteAddr()) }

// NetConn returns the underlying *net.TCPConn, which reports IPv4 peers
// IPv4-mapped. The name and type follow [crypto/tls.Conn.NetConn].
func (c Conn) NetConn() net.Conn { return c.TCPConn }

// ReadFrom implements [io.ReaderFrom] through the TCPConn's, unwrapping a
// Conn source so that the kernel can splice between the sockets.
func (c Conn) ReadFrom(r io.Reader) (int64, error) {
	switch v := r.(type) {
	case Conn:
		return c.TCPConn.ReadFrom(v.TCPConn)
	case *io.LimitedReader:
		if inner, ok := v.R.(Conn); ok {
			lr := &io.LimitedReader{R: inner.TCPConn, N: v.N}
			n, err := c.TCPConn.ReadFrom(lr)
			v.N = lr.N
			return n, err
		}
	}
	return c.TCPConn.ReadFrom(r)
}

// WriteTo implements [io.WriterTo] through the TCPConn's, unwrapping a Conn
// destination so that the kernel can splice between the sockets.
func (c Conn) WriteTo(w io.Writer) (int64, error) {
	if v, ok := w.(Conn); ok {
		w = v.TCPConn
	}
	return c.TCPConn.WriteTo(w)
}
