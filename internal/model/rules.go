package model

// Rule is one behaviour of a kernel that the model encodes, with its
// source. Tests switch rules off one at a time (Kernel.Without) to show
// that each one matters: with it off, the model must disagree with the
// kernel it describes, or with the tables read from its source. Off means
// the rule does not hold; where that leaves the choice open (which of two
// sockets wins), off means the other one wins.
type Rule string

// The rules of the Linux model, checked against the running kernel.
const (
	LinuxSpecificV6Only    Rule = "linux: a bind of a specific IPv6 address is IPv6-only (inet6_bind)"
	LinuxV6OnlyNoOverlap   Rule = "linux: an IPv6-only socket shares no address with AF_INET sockets (inet_rcv_saddr_equal)"
	LinuxReuseAddr         Rule = "linux: two SO_REUSEADDR sockets share a port unless one listens (inet_csk_bind_conflict)"
	LinuxReusePort         Rule = "linux: two SO_REUSEPORT sockets share a port (inet_csk_bind_conflict)"
	LinuxListenRecheck     Rule = "linux: listen checks the port again (inet_csk_listen_start)"
	LinuxFastReuse         Rule = "linux: the bind bucket's fast paths pass a bind without the full check (inet_csk_get_port)"
	LinuxEphemeralAnyOwner Rule = "linux: the ephemeral search skips a port any overlapping socket holds (inet_csk_find_open_port)"
	LinuxInetWildFirst     Rule = "linux: an AF_INET wildcard listener beats an AF_INET6 one for IPv4 (compute_score)"
	LinuxInetExactFirst    Rule = "linux: an AF_INET listener beats an AF_INET6 one on ::ffff:a.b.c.d (compute_score)"
	LinuxReusePortSameUser Rule = "linux: only sockets of one user share a port by SO_REUSEPORT (sk_reuseport_match, inet_csk_bind_conflict, udp_lib_lport_inuse)"
	LinuxUDPReuseAddr      Rule = "linux udp: two SO_REUSEADDR sockets share an address (udp_lib_lport_inuse)"
	LinuxUDPReusePort      Rule = "linux udp: two SO_REUSEPORT sockets share an address (udp_lib_lport_inuse)"
	LinuxUDPReusePortEarly Rule = "linux udp: a bind ends at the first SO_REUSEPORT partner, free (udp_lib_lport_inuse)"
	LinuxUDPReusePortTail  Rule = "linux udp: an AF_INET6 SO_REUSEPORT socket goes to the tail of the chain (udp_lib_get_port)"
)

// The rules of the BSD models; those named freebsd are checked against
// the FreeBSD 15.1 kernel, the others against it too where FreeBSD shares
// them, and read in XNU's and OpenBSD's sources.
const (
	BSDReuseExact             Rule = "bsd: a bind with a reuse option finds only sockets on exactly its address (in_pcbbind_setup)"
	BSDReusePortShares        Rule = "bsd: two SO_REUSEPORT sockets share an address (in_pcbbind_setup)"
	BSDDualChecksIPv4         Rule = "bsd: a dual-stack bind asks the IPv4 lookup too (in6_pcbbind)"
	BSDInetWildcardExempt     Rule = "bsd: an AF_INET socket on the wildcard, not an AF_INET6 one on ::ffff:0.0.0.0, does not refuse a dual-stack bind (in6_pcbbind)"
	BSDConnectedHolds         Rule = "bsd: connected and TIME_WAIT sockets hold their port in wildcard lookups (in_pcblookup_local)"
	BSDBoundTakes             Rule = "bsd: a socket bound but not listening takes connections to its address and refuses them"
	BSDExactFirst             Rule = "bsd: a socket on the destination address beats a wildcard"
	BSDConnectV6Only          Rule = "bsd: a dual-stack socket connected over IPv6 becomes IPv6-only (tcp6_usr_connect)"
	BSDMappedWildcardsShare   Rule = "bsd: a bind of ::ffff:0.0.0.0 is not refused by another AF_INET6 socket's IPv4 wildcard (in_pcbbind_setup)"
	BSDOtherUser              Rule = "bsd: an unprivileged bind finds another user's socket whatever its options, and is refused (in_pcbbind_setup)"
	FreeBSDDualEphemeralV4    Rule = "freebsd: the ephemeral search of a dual-stack socket asks the IPv4 lookup (in_pcb_lport_dest)"
	FreeBSDNewestWildcard     Rule = "freebsd: the newest wildcard of either family takes IPv4 (_in_pcbinshash_wild)"
	FreeBSDMappedWildcardLast Rule = "freebsd: a wildcard bound to ::ffff:0.0.0.0 comes after every other (_in_pcbinshash_wild)"
	FreeBSDLBGroups           Rule = "freebsd: SO_REUSEPORT_LB groups are looked up first (in_pcblookup_lbgroup)"
	FreeBSDLBShares           Rule = "freebsd: two SO_REUSEPORT_LB sockets share an address (in_pcbbind_setup)"
	FreeBSDLBPending          Rule = "freebsd: only listening members of a group take connections, and a group without one passes them on"
	FreeBSDLBStaleGroup       Rule = "freebsd: a group whose members all left before listening stays"
	FreeBSDLBNoDual           Rule = "freebsd: an AF_INET6 socket on the IPv4 wildcard (dual-stack, or ::ffff:0.0.0.0) joins no group (in_pcbinslbgrouphash)"
	FreeBSDLBNoConnect        Rule = "freebsd: a SO_REUSEPORT_LB socket cannot connect"
	FreeBSDLBMappedApart      Rule = "freebsd: sockets bound to an IPv4-mapped address form groups apart from AF_INET ones (in_pcbinslbgrouphash)"
	FreeBSDLBNewestGroup      Rule = "freebsd: of an AF_INET group and an IPv4-mapped one on the destination, the newest is found"
	FreeBSDLBUDPConnectLeaves Rule = "freebsd udp: a connected socket leaves its group"
	XNUEphemeralV4Wild        Rule = "xnu: an ephemeral AF_INET bind always looks up wildcards (in_pcbbind)"
	XNUOldestWildcard         Rule = "xnu: the oldest AF_INET wildcard, then the oldest dual-stack socket, takes IPv4 (in_pcblookup_hash_locked)"
)

// Rules returns the rules of an OS's model.
func Rules(os OS) []Rule {
	bsd := []Rule{BSDReuseExact, BSDReusePortShares, BSDDualChecksIPv4, BSDInetWildcardExempt,
		BSDConnectedHolds, BSDBoundTakes, BSDExactFirst, BSDConnectV6Only, BSDMappedWildcardsShare, BSDOtherUser}
	switch os {
	case Linux:
		return []Rule{LinuxReusePortSameUser, LinuxUDPReuseAddr, LinuxUDPReusePort, LinuxUDPReusePortEarly, LinuxUDPReusePortTail, LinuxSpecificV6Only, LinuxV6OnlyNoOverlap, LinuxReuseAddr, LinuxReusePort,
			LinuxListenRecheck, LinuxFastReuse, LinuxEphemeralAnyOwner, LinuxInetWildFirst, LinuxInetExactFirst}
	case FreeBSD:
		return append(bsd, FreeBSDDualEphemeralV4, FreeBSDNewestWildcard, FreeBSDMappedWildcardLast,
			FreeBSDLBGroups, FreeBSDLBShares, FreeBSDLBPending, FreeBSDLBStaleGroup, FreeBSDLBNoDual,
			FreeBSDLBNoConnect, FreeBSDLBMappedApart, FreeBSDLBNewestGroup, FreeBSDLBUDPConnectLeaves)
	case Darwin:
		return append(bsd, XNUEphemeralV4Wild, XNUOldestWildcard)
	case NetBSD:
		return []Rule{BSDReuseExact, BSDReusePortShares, BSDConnectedHolds, BSDBoundTakes, BSDExactFirst,
			NetBSDInetSeesInet6, NetBSDInet6Apart, NetBSDSearchOwnFamily, NetBSDEphemeralWildcards,
			NetBSDEphemeralFallback, NetBSDFoundFirst, NetBSDInetFirst}
	}
	return nil
}

// Without switches rules off, for the rest of the kernel's life.
func (k *Kernel) Without(rules ...Rule) {
	if k.off == nil {
		k.off = map[Rule]bool{}
	}
	for _, r := range rules {
		k.off[r] = true
	}
}

// has reports whether a rule is on.
func (k *Kernel) has(r Rule) bool { return !k.off[r] }
