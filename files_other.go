//go:build !unix

package dualstack

import (
	"errors"
	"syscall"
)

const solSocket, soAcceptConn, ipprotoIPv6, ipv6V6Only = 0, 0, 0, 0

// sockoptOn cannot read a socket option here; FileListener and
// FilePacketConn, which need it, are Unix-only, as net.FileListener is.
func sockoptOn(syscall.RawConn, int, int) (bool, error) {
	return false, errors.ErrUnsupported
}
