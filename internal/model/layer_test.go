//go:build linux || freebsd

package model_test

import (
	"net/netip"

	"github.com/dualstack-go/dualstack/internal/model"
)

// layer is a socket layer that the kernel's side of the agreement runs on:
// the host kernel's (hostLayer), or NetBSD's rump stack (tag rump). Its
// descriptors are its own; its errors are the host's errno values.
type layer interface {
	// open makes a socket of family fam with options o, TCP or UDP, as
	// root or (uid not 0) as the maker's user.
	open(fam model.Family, o model.Options, udp bool, other *maker, uid int) (int, error)
	// bind binds and returns the port bound.
	bind(fd int, a netip.AddrPort) (uint16, error)
	listen(fd int) error
	close(fd int)
	// connect connects fd, waiting for the answer.
	connect(fd int, dst netip.AddrPort) error
	accept(fd int) (int, error)
	// readable reports, without waiting, whether fd has a connection or
	// a datagram waiting.
	readable(fd int) bool
	// dialFrom connects a client bound to src to dst; refused reports
	// that the connection was refused. done closes the client with a
	// reset.
	dialFrom(src, dst netip.AddrPort) (done func(), refused bool, err error)
	// sendFrom sends a datagram from a client bound to src to dst.
	sendFrom(src, dst netip.AddrPort) error
	// recv reads a datagram without waiting.
	recv(fd int) error
}
