package main

import "net"

// kernelRelease is not read on Windows.
func kernelRelease() string { return "" }

// ipv6Sockets reports whether an IPv6 socket can be bound.
func ipv6Sockets() bool {
	ln, err := net.Listen("tcp6", "[::]:0")
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

// v6onlyDefault is on: every new AF_INET6 socket of Windows is IPv6-only.
func v6onlyDefault() (bool, error) { return true, nil }
