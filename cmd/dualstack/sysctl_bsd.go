//go:build darwin || freebsd || netbsd || openbsd || dragonfly

package main

import (
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"
)

// v6onlySource names the setting the IPV6_V6ONLY default comes from.
func v6onlySource() string {
	if runtime.GOOS == "openbsd" || runtime.GOOS == "dragonfly" {
		return "always on: " + runtime.GOOS + " has no dual-stack sockets"
	}
	v, err := unix.SysctlUint32("net.inet6.ip6.v6only")
	if err != nil {
		return "net.inet6.ip6.v6only, unreadable"
	}
	return "net.inet6.ip6.v6only = " + strconv.FormatUint(uint64(v), 10)
}

// ipv6Sysctl is empty: the BSDs have no one switch that disables IPv6.
func ipv6Sysctl() string { return "" }

// portRange returns the ephemeral port range and the settings it comes
// from.
func portRange() (first, last int, source string, ok bool) {
	lo, hi := "net.inet.ip.portrange.first", "net.inet.ip.portrange.last"
	switch runtime.GOOS {
	case "netbsd":
		lo, hi = "net.inet.ip.anonportmin", "net.inet.ip.anonportmax"
	case "openbsd":
		lo, hi = "net.inet.ip.porthifirst", "net.inet.ip.porthilast"
	}
	f, err1 := unix.SysctlUint32(lo)
	l, err2 := unix.SysctlUint32(hi)
	if err1 != nil || err2 != nil {
		return 0, 0, "", false
	}
	return int(f), int(l), lo + ", " + hi, true
}
