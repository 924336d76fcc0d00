package model

import (
	"net/netip"
	"syscall"
)

// NetBSD's rules, checked against NetBSD's own network stack of August
// 2016 (a rump kernel, ../shared/netbsd-rump) and read in its sources:
// sys/netinet/in_pcb.c (in_pcbbind_port, in_pcblookup_port,
// in_pcblookup_bind), sys/netinet6/in6_pcb.c (in6_pcbbind_port,
// in6_pcblookup_port, in6_pcblookup_bind) and sys/netinet/portalgo.c
// (check_suitable_port, portalgo_randport), which read the same in
// NetBSD 10 but for portalgo.c, whose NetBSD 10 text we did not read.
const (
	NetBSDInetSeesInet6      Rule = "netbsd: an AF_INET bind looks up AF_INET6 sockets too, with its address mapped (in_pcbbind_port)"
	NetBSDInet6Apart         Rule = "netbsd: an IPv6 bind, a dual-stack one too, looks up AF_INET6 sockets only (in6_pcbbind_port)"
	NetBSDSearchOwnFamily    Rule = "netbsd: a port search looks up one family: AF_INET sockets for an AF_INET or IPv4-mapped socket (check_suitable_port)"
	NetBSDEphemeralWildcards Rule = "netbsd: an AF_INET port search looks up wildcards whatever the options (check_suitable_port)"
	NetBSDEphemeralFallback  Rule = "netbsd: a search that finds no port gives the one below the last it gave, unchecked (portalgo_randport)"
	NetBSDFoundFirst         Rule = "netbsd: a delivery goes to the socket last bound or found among those on one address, for a lookup moves the socket it finds to the front of its chain (in_pcblookup_bind, in6_pcblookup_bind)"
	NetBSDInetFirst          Rule = "netbsd: IPv4 goes to an AF_INET socket before an AF_INET6 one, and to ::ffff:0.0.0.0 before [::] (tcp_input, udp_input, in6_pcblookup_bind)"
)

// netbsdIn is in_pcblookup_port: among the AF_INET sockets on port, one
// on exactly addr, or (wild) the best fit, a connected or TIME_WAIT one
// at a cost.
func (k *Kernel) netbsdIn(addr netip.Addr, port uint16, wild bool) *Socket {
	return k.bestFit(port, wild, func(t *Socket) (int, bool) {
		if t.Family != 4 || t.Mapped {
			return 0, false
		}
		return addrCost(t.Addr, addr)
	})
}

// netbsdIn6 is in6_pcblookup_port for addr, an IPv6 address or (mapped)
// the IPv4 address of ::ffff:a.b.c.d. An IPv6 address never finds a
// socket on a mapped one; a mapped one finds sockets on mapped addresses
// as netbsdIn finds AF_INET ones, and a dual-stack [::] as a wildcard.
func (k *Kernel) netbsdIn6(addr netip.Addr, mapped bool, port uint16, wild bool) *Socket {
	return k.bestFit(port, wild, func(t *Socket) (int, bool) {
		switch {
		case t.Family != 6 && !t.Mapped:
			return 0, false
		case t.Mapped:
			if !mapped {
				return 0, false
			}
			return addrCost(t.Addr, addr)
		case mapped && t.Opts.V6Only:
			return 0, false
		case t.Addr.IsUnspecified():
			if mapped || !addr.IsUnspecified() {
				return 1, true
			}
			return 0, true
		case !mapped && addr.IsUnspecified():
			return 1, true
		case mapped || t.Addr != addr:
			return 0, false
		}
		return 0, true
	})
}

// netbsdCheck is in_pcbbind_port and in6_pcbbind_port for an explicit
// port: each lookup they make may find a socket, which refuses the bind
// unless both have SO_REUSEPORT. A bind without SO_REUSEADDR and
// SO_REUSEPORT looks up wildcards.
func (k *Kernel) netbsdCheck(s *Socket, addr netip.Addr, port uint16) error {
	wild := !s.Opts.reuse() || !k.has(BSDReuseExact)
	for _, t := range k.netbsdLookups(s, addr, port, wild, false) {
		if t != nil && !(s.Opts.ReusePort && t.Opts.ReusePort && k.has(BSDReusePortShares)) {
			return syscall.EADDRINUSE
		}
	}
	return nil
}

// netbsdLookups makes the lookups of a bind of s to addr:port, or of its
// port search (search).
func (k *Kernel) netbsdLookups(s *Socket, addr netip.Addr, port uint16, wild, search bool) []*Socket {
	own := search && k.has(NetBSDSearchOwnFamily)
	switch {
	case s.Family == 4 && !s.Mapped:
		if own || !k.has(NetBSDInetSeesInet6) {
			return []*Socket{k.netbsdIn(addr, port, wild)}
		}
		return []*Socket{k.netbsdIn6(addr, true, port, wild), k.netbsdIn(addr, port, wild)}
	case s.Mapped:
		if own {
			return []*Socket{k.netbsdIn(addr, port, wild)}
		}
		return []*Socket{k.netbsdIn(addr, port, wild), k.netbsdIn6(addr, true, port, wild)}
	case s.Family == 6 && !s.Opts.V6Only && addr.IsUnspecified() && !k.has(NetBSDInet6Apart):
		return []*Socket{k.netbsdIn6(addr, false, port, wild), k.netbsdIn(netip.IPv4Unspecified(), port, wild)}
	}
	return []*Socket{k.netbsdIn6(addr, false, port, wild)}
}

// netbsdSuitable is check_suitable_port: an AF_INET search looks up
// wildcards whatever the socket's options; an AF_INET6 one only for a
// socket without SO_REUSEADDR and SO_REUSEPORT.
func (k *Kernel) netbsdSuitable(s *Socket, addr netip.Addr, port uint16) bool {
	wild := !s.Opts.reuse()
	if s.Family == 4 && !s.Mapped && k.has(NetBSDEphemeralWildcards) {
		wild = true
	}
	for _, t := range k.netbsdLookups(s, addr, port, wild, true) {
		if t != nil {
			return false
		}
	}
	return true
}

// netbsdEphemeral returns the ports an ephemeral bind may land on: the
// suitable ports of the range; where there is none, the port below the
// last the search gave (portalgo_randport's fallback, which no check
// follows), or any port while the model does not know that one.
func (k *Kernel) netbsdEphemeral(s *Socket, addr netip.Addr) []uint16 {
	var ports []uint16
	for p := int(k.Lo); p <= int(k.Hi); p++ {
		if k.netbsdSuitable(s, addr, uint16(p)) {
			ports = append(ports, uint16(p))
		}
	}
	if len(ports) > 0 || !k.has(NetBSDEphemeralFallback) {
		return ports
	}
	if k.lastPort == 0 {
		ports = make([]uint16, 0, 65535)
		for p := 1; p <= 65535; p++ {
			ports = append(ports, uint16(p))
		}
		return ports
	}
	return []uint16{k.lastPort - 1}
}

// netbsdDeliver is in_pcblookup_bind and in6_pcblookup_bind after no
// connected socket matched: for IPv4, an AF_INET socket on dst's address,
// then on the wildcard, then an AF_INET6 one on ::ffff:dst, then on
// ::ffff:0.0.0.0, then a dual-stack wildcard; for IPv6, an AF_INET6 socket on dst's address, then
// on the wildcard. On each step the socket last bound or found, which
// goes to the front again; a socket bound but not listening takes the
// connection and drops it.
func (k *Kernel) netbsdDeliver(dst netip.AddrPort) []*Socket {
	first := func(match func(s *Socket) bool) *Socket {
		var found *Socket
		for _, s := range k.bound {
			if s.Port != dst.Port() || s.Connected || s.TimeWait || (!s.Listening && !k.has(BSDBoundTakes)) || !match(s) {
				continue
			}
			if found == nil || s.head > found.head && k.has(NetBSDFoundFirst) {
				found = s
			}
		}
		if found != nil {
			k.tick++
			found.head = k.tick
		}
		return found
	}
	var steps []func(s *Socket) bool
	if dst.Addr().Is4() {
		inet := func(s *Socket) bool { return s.Family == 4 && !s.Mapped }
		exact := func(s *Socket) bool { return s.Family == 4 && s.Addr == dst.Addr() }
		wild := func(s *Socket) bool { return s.dual() || s.Addr.IsUnspecified() && s.Family == 4 }
		if k.has(NetBSDInetFirst) {
			steps = append(steps,
				func(s *Socket) bool { return inet(s) && exact(s) },
				func(s *Socket) bool { return inet(s) && wild(s) },
				func(s *Socket) bool { return s.Mapped && exact(s) },
				func(s *Socket) bool { return s.Mapped && wild(s) },
				func(s *Socket) bool { return s.dual() })
		} else {
			steps = append(steps, exact, wild)
		}
	} else {
		steps = append(steps,
			func(s *Socket) bool { return s.Family == 6 && s.Addr == dst.Addr() },
			func(s *Socket) bool { return s.Family == 6 && s.Addr.IsUnspecified() })
	}
	if !k.has(BSDExactFirst) && len(steps) >= 2 {
		steps[0], steps[1] = steps[1], steps[0]
	}
	for _, step := range steps {
		if s := first(step); s != nil {
			return []*Socket{s}
		}
	}
	return nil
}
