//go:build unix

package dualstack

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

const (
	solSocket    = unix.SOL_SOCKET
	soAcceptConn = unix.SO_ACCEPTCONN
	ipprotoIPv6  = unix.IPPROTO_IPV6
	ipv6V6Only   = unix.IPV6_V6ONLY
)

// sockoptOn reads an integer socket option as a flag.
func sockoptOn(rc syscall.RawConn, level, opt int) (bool, error) {
	var v int
	var serr error
	if err := rc.Control(func(fd uintptr) { v, serr = unix.GetsockoptInt(int(fd), level, opt) }); err != nil {
		return false, err
	}
	if serr != nil {
		return false, os.NewSyscallError("getsockopt", serr)
	}
	return v != 0, nil
}
