package main

import (
	"os"
	"strconv"
	"strings"
)

// readSysctl reads a setting of the calling thread's network namespace.
func readSysctl(name string) (string, bool) {
	b, err := os.ReadFile("/proc/sys/" + strings.ReplaceAll(name, ".", "/"))
	if err != nil {
		return "", false
	}
	return strings.Join(strings.Fields(string(b)), " "), true
}

// v6onlySource names the setting the IPV6_V6ONLY default comes from.
func v6onlySource() string {
	v, ok := readSysctl("net.ipv6.bindv6only")
	if !ok {
		return "net.ipv6.bindv6only, unreadable"
	}
	return "net.ipv6.bindv6only = " + v
}

// ipv6Sysctl names the setting that disables IPv6.
func ipv6Sysctl() string {
	v, ok := readSysctl("net.ipv6.conf.all.disable_ipv6")
	if !ok {
		return ""
	}
	return "net.ipv6.conf.all.disable_ipv6 = " + v
}

// portRange returns the ephemeral port range and the setting it comes from.
func portRange() (first, last int, source string, ok bool) {
	v, ok := readSysctl("net.ipv4.ip_local_port_range")
	if !ok {
		return 0, 0, "", false
	}
	f := strings.Fields(v)
	if len(f) != 2 {
		return 0, 0, "", false
	}
	first, err1 := strconv.Atoi(f[0])
	last, err2 := strconv.Atoi(f[1])
	return first, last, "net.ipv4.ip_local_port_range", err1 == nil && err2 == nil
}
