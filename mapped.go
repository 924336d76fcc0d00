package dualstack

import (
	"net"
	"net/netip"
	"strings"
)

// This file normalizes IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) to their
// IPv4 form. Only ::ffff:0:0/96 is IPv4-mapped: ::ffff:0:a.b.c.d (SIIT),
// ::a.b.c.d (the deprecated IPv4-compatible form) and 64:ff9b::/96 (NAT64)
// name IPv6 hosts and are left alone. Every function here is idempotent and
// never panics.

// Unmap returns a with an IPv4-mapped IP replaced by its IPv4 form, for a
// *[net.TCPAddr], *[net.UDPAddr] or *[net.IPAddr]; it returns any other
// address, and one without a mapped IP, unchanged. The port is kept; a
// zone cannot go with an IPv4 address and is dropped. It allocates only
// when it changes something, and never modifies a.
//
// A 16-byte [net.IP] cannot tell an IPv4-mapped address from an IPv4
// address that the net package stores in 16 bytes; both print as
// a.b.c.d. Unmap gives both their 4-byte form, so that AddrPort and
// [netip.Addr.Is4] see IPv4.
func Unmap(a net.Addr) net.Addr {
	switch a := a.(type) {
	case *net.TCPAddr:
		if a != nil {
			if ip, ok := unmapIP(a.IP); ok {
				return &net.TCPAddr{IP: ip, Port: a.Port}
			}
		}
	case *net.UDPAddr:
		if a != nil {
			if ip, ok := unmapIP(a.IP); ok {
				return &net.UDPAddr{IP: ip, Port: a.Port}
			}
		}
	case *net.IPAddr:
		if a != nil {
			if ip, ok := unmapIP(a.IP); ok {
				return &net.IPAddr{IP: ip}
			}
		}
	}
	return a
}

// unmapIP returns the 4-byte form of a 16-byte IPv4-mapped IP, in a slice
// of its own.
func unmapIP(ip net.IP) (net.IP, bool) {
	if len(ip) != net.IPv6len {
		return nil, false
	}
	v4 := ip.To4()
	if v4 == nil {
		return nil, false
	}
	return net.IPv4(v4[0], v4[1], v4[2], v4[3]).To4(), true
}

// ipNetwork reports whether network names an IP network, as net.Dial
// takes them.
func ipNetwork(network string) bool {
	switch network {
	case "tcp", "tcp4", "tcp6", "udp", "udp4", "udp6", "ip", "ip4", "ip6":
		return true
	}
	base, _, ok := strings.Cut(network, ":") // "ip4:icmp"
	return ok && (base == "ip" || base == "ip4" || base == "ip6")
}

// UnmapAddrPort returns ap with an IPv4-mapped address replaced by its IPv4
// form, as [netip.Addr.Unmap] does, keeping the port. Other addresses keep
// their zone. It does not allocate.
func UnmapAddrPort(ap netip.AddrPort) netip.AddrPort {
	if !ap.Addr().Is4In6() {
		return ap
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// AddrPortFrom returns the address and port of a, unmapped, and whether a
// holds an IP address. It reads *[net.TCPAddr], *[net.UDPAddr] and
// *[net.IPAddr] (port 0) directly, and another type through its String
// form, "host:port" or a bare IP, when its Network is an IP one ("tcp",
// "udp", "ip", with a 4 or 6 or a protocol after "ip:"). Any other address
// is not an IP one, whatever its text: a Unix socket's path may read
// "10.0.0.1:80". It does not allocate for the three net types.
//
// This is the form to check against a [netip.Prefix] or to key a rate
// limiter by:
//
//	ap, ok := dualstack.AddrPortFrom(conn.RemoteAddr())
//	allowed := ok && trusted.Contains(ap.Addr())
func AddrPortFrom(a net.Addr) (netip.AddrPort, bool) {
	var ap netip.AddrPort
	switch a := a.(type) {
	case nil:
		return netip.AddrPort{}, false
	case *net.TCPAddr:
		if a == nil {
			return netip.AddrPort{}, false
		}
		ap = a.AddrPort()
	case *net.UDPAddr:
		if a == nil {
			return netip.AddrPort{}, false
		}
		ap = a.AddrPort()
	case *net.IPAddr:
		if a == nil {
			return netip.AddrPort{}, false
		}
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			return netip.AddrPort{}, false
		}
		ap = netip.AddrPortFrom(ip.WithZone(a.Zone), 0)
	default:
		if !ipNetwork(a.Network()) {
			return netip.AddrPort{}, false
		}
		s := a.String()
		var err error
		if ap, err = netip.ParseAddrPort(s); err != nil {
			ip, err := netip.ParseAddr(s)
			if err != nil {
				return netip.AddrPort{}, false
			}
			ap = netip.AddrPortFrom(ip, 0)
		}
	}
	if !ap.Addr().IsValid() {
		return netip.AddrPort{}, false
	}
	return UnmapAddrPort(ap), true
}

// UnmapString returns s with an IPv4-mapped address in its IPv4 form, where
// s is an address ("::ffff:192.0.2.1" becomes "192.0.2.1") or a bracketed
// address and port ("[::ffff:192.0.2.1]:80" becomes "192.0.2.1:80"). Any
// other text, including every address that is not IPv4-mapped, comes back
// unchanged, spelling included. It is meant for text from logs and headers
// such as X-Forwarded-For, one value at a time. It does not allocate when
// it changes nothing.
func UnmapString(s string) string {
	// Most text cannot be a mapped address, and is returned unparsed.
	if !mayBeMapped(s) {
		return s
	}
	if s[0] == '[' {
		ap, err := netip.ParseAddrPort(s)
		if err != nil || !ap.Addr().Is4In6() {
			return s
		}
		return UnmapAddrPort(ap).String()
	}
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4In6() {
		return s
	}
	return a.Unmap().String()
}

// mayBeMapped reports whether s may spell an IPv4-mapped address, alone,
// bracketed or with a port. It rules out most text from its first bytes:
// the first five groups of a mapped address are zero, so it starts with
// "0" or "::" (after an optional "["), and its sixth group is ffff,
// followed by more; the shortest is "::ffff:0:0".
func mayBeMapped(s string) bool {
	if len(s) < len("::ffff:0:0") {
		return false
	}
	c := s[0]
	if c == '[' {
		c = s[1]
	}
	if c != '0' && c != ':' {
		return false
	}
	for i := 4; i < len(s); i++ {
		j := strings.IndexByte(s[i:], ':')
		if j < 0 {
			return false
		}
		i += j
		if s[i-4]|0x20 == 'f' && s[i-3]|0x20 == 'f' && s[i-2]|0x20 == 'f' && s[i-1]|0x20 == 'f' {
			return true
		}
	}
	return false
}
