//go:build unix

package main

import (
	"os"

	"golang.org/x/sys/unix"
)

// kernelRelease returns the kernel's release, as uname -r prints it.
func kernelRelease() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

// ipv6Sockets reports whether AF_INET6 sockets can be made.
func ipv6Sockets() bool {
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_STREAM, 0)
	if err != nil {
		return false
	}
	unix.Close(fd)
	return true
}

// v6onlyDefault returns the IPV6_V6ONLY of a new AF_INET6 socket.
func v6onlyDefault() (bool, error) {
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_STREAM, 0)
	if err != nil {
		return false, os.NewSyscallError("socket", err)
	}
	defer unix.Close(fd)
	v, err := unix.GetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY)
	if err != nil {
		return false, os.NewSyscallError("getsockopt", err)
	}
	return v != 0, nil
}
