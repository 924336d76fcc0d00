// Package model is an executable model of how operating system kernels
// bind TCP sockets and deliver connections: which binds fail with
// EADDRINUSE, which ports an ephemeral bind may land on, and which socket
// a connection to an address and port reaches.
//
// It models Linux, macOS (XNU), FreeBSD, OpenBSD and Windows, each from its
// source or documentation:
//
//   - Linux: net/ipv4/inet_connection_sock.c (inet_rcv_saddr_equal,
//     inet_csk_bind_conflict, inet_csk_find_open_port) and the listener
//     lookup's scoring, where an exact address beats a wildcard and an
//     AF_INET wildcard beats a dual-stack one. A specific IPv6 bind is
//     IPv6-only (inet6_bind). Only listening sockets take connections.
//     The model is checked against the running kernel by this package's
//     tests, in a network namespace.
//   - FreeBSD 15: sys/netinet/in_pcb.c and sys/netinet6/in6_pcb.c. Binds
//     (in_pcbbind_setup, in6_pcbbind): a best-fit lookup of the port's
//     sockets (in_pcblookup_local), in which a connected socket costs one
//     more and a dual-stack one three more, matches wildcards only when
//     the binding socket has none of SO_REUSEADDR, SO_REUSEPORT and
//     SO_REUSEPORT_LB; otherwise only an unconnected socket on exactly the
//     same address is found. A socket found refuses the bind unless both
//     have SO_REUSEPORT or both SO_REUSEPORT_LB. A dual-stack bind also
//     asks the IPv4 lookup, and is not refused by an AF_INET wildcard.
//     Ephemeral ports (in_pcb_lport_dest) skip ports where that lookup
//     finds a socket. Delivery (in_pcblookup_hash_smr): a
//     SO_REUSEPORT_LB group on the address, else on the wildcard; then the
//     first unconnected socket of the port's hash chain, where sockets on
//     a specific address come before wildcards and each kind newest first
//     (_in_pcbinshash_wild), listening or not: a socket that is bound but
//     not listening takes the connection and refuses it. This model is
//     checked against the FreeBSD 15.1 kernel in the harness's VM.
//   - macOS: XNU's in_pcbbind and in_pcblookup_local
//     (bsd/netinet/in_pcb.c), in6_pcbbind (bsd/netinet6/in6_pcb.c) and
//     in6_pcbsetport (bsd/netinet6/in6_src.c): the same lookups without
//     the dual-stack cost; an ephemeral AF_INET bind always looks up
//     wildcards, an AF_INET6 one only without SO_REUSE*, and sees only
//     AF_INET6 sockets. Delivery (in_pcblookup_hash_locked): an exact
//     address (newest), then the oldest AF_INET wildcard, then the oldest
//     dual-stack socket; one that is not listening drops the connection
//     (tcp_input, TCPS_CLOSED). No SO_REUSEPORT_LB.
//   - OpenBSD: the lookups of macOS, with no dual-stack sockets.
//   - Windows: the table of "Sharing Transport Addresses" (WSK), for the
//     default options, SO_REUSEADDR and SO_EXCLUSIVEADDRUSE, all sockets
//     of one user; a dual-stack socket holds the wildcard of both
//     families. Its ephemeral search is modelled as the worst case: any
//     port that an explicit bind could take.
//
// Every socket belongs to one user; privileged ports are not modelled.
// Connected and TIME_WAIT sockets are modelled for FreeBSD and macOS only.
package model

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"syscall"
)

// OS names a modelled kernel, as GOOS does.
type OS string

// The modelled kernels.
const (
	Linux   OS = "linux"
	Darwin  OS = "darwin"
	FreeBSD OS = "freebsd"
	OpenBSD OS = "openbsd"
	NetBSD  OS = "netbsd"
	Windows OS = "windows"
)

// All lists the modelled kernels.
var All = []OS{Linux, Darwin, FreeBSD, OpenBSD, NetBSD, Windows}

// Family is an address family: 4 (AF_INET) or 6 (AF_INET6).
type Family int

// Options are the socket options that bear on binding.
type Options struct {
	V6Only      bool // IPV6_V6ONLY, AF_INET6 only
	ReuseAddr   bool // SO_REUSEADDR
	ReusePort   bool // SO_REUSEPORT
	ReusePortLB bool // SO_REUSEPORT_LB (FreeBSD)
	Exclusive   bool // SO_EXCLUSIVEADDRUSE (Windows)
}

// reuse reports whether any option makes a BSD bind look up only the
// exact address.
func (o Options) reuse() bool { return o.ReuseAddr || o.ReusePort || o.ReusePortLB }

// Socket is a socket of the model.
type Socket struct {
	ID     int
	Family Family
	Opts   Options
	Owner  string // who opened it, for reports
	// UID is the user that created the socket: 0, root, or another. The
	// kernels let only sockets of one user share a port by SO_REUSEPORT
	// (Linux), and refuse an unprivileged bind next to another user's
	// socket whatever its options (the BSDs).
	UID int

	Addr      netip.Addr // valid once bound
	Port      uint16
	Bound     bool
	Listening bool
	// Connected reports that the socket has a peer: it holds its port
	// but takes no new connections.
	Connected bool
	// TimeWait reports that the socket was closed by its owner after it
	// connected, and the kernel keeps it, in TIME_WAIT, until Expire.
	TimeWait bool
	Closed   bool
	// Mapped reports an AF_INET6 socket bound to an IPv4-mapped address
	// (::ffff:a.b.c.d): the kernels treat it as an AF_INET socket on
	// a.b.c.d, and the model does, with Family 4 and Addr a.b.c.d, but
	// for the few rules that tell it apart.
	Mapped bool

	listened bool // listening when closed
	// head is the kernel's tick when the socket last went to the head of
	// its chain of the bind hash (NetBSD): when bound, and when a lookup
	// found it.
	head int
}

func (s *Socket) String() string {
	v6only := ""
	if s.Family == 6 && !s.dual() {
		v6only = " v6only"
	}
	state := "unbound"
	switch {
	case s.TimeWait:
		state = "time-wait"
	case s.Closed:
		state = "closed"
	case s.Connected:
		state = "connected"
	case s.Listening:
		state = "listening"
	case s.Bound:
		state = "bound"
	}
	mapped := ""
	if s.Mapped {
		mapped = " mapped"
	}
	user := ""
	if s.UID != 0 {
		user = fmt.Sprintf(" uid %d", s.UID)
	}
	return fmt.Sprintf("%s#%d[%s%s%s %v %s%s]", s.Owner, s.ID, netip.AddrPortFrom(s.Addr, s.Port), v6only, mapped, s.Opts, state, user)
}

// dual reports whether the socket takes IPv4 on an AF_INET6 wildcard.
func (s *Socket) dual() bool {
	return s.Family == 6 && !s.Opts.V6Only && s.Addr.IsUnspecified()
}

// Kernel is the state of one modelled kernel: its sockets and its range of
// ephemeral ports, for TCP or (UDP set before the first socket) UDP.
type Kernel struct {
	OS OS
	// UDP makes the kernel's sockets UDP sockets: every bound one
	// receives, none listens, none stays in TIME_WAIT. The BSDs bind and
	// deliver UDP as TCP (in_pcbbind_setup, in_pcblookup_mbuf from
	// udp_input); Linux has rules of its own (udp_lib_get_port,
	// udp4_lib_lookup2).
	UDP     bool
	Lo, Hi  uint16 // the ephemeral range, inclusive
	rng     *rand.Rand
	bound   []*Socket // bound sockets, newest first
	buckets map[uint16]*bucket
	groups  map[groupKey]*lbGroup // FreeBSD's SO_REUSEPORT_LB groups
	nextID  int
	groupID int // the last group's seq
	// lastPort is the last port an ephemeral search gave (NetBSD's
	// inpt_lastport), 0 while the model has not seen one.
	lastPort uint16
	tick     int           // NetBSD's bind hash order (Socket.head)
	off      map[Rule]bool // rules switched off (Without)
}

// groupKey names a SO_REUSEPORT_LB group: one family, address and port.
// AF_INET6 sockets bound to an IPv4-mapped address have groups of their
// own (in_pcbinslbgrouphash compares the groups' inp_vflag and address).
type groupKey struct {
	f      Family
	addr   netip.Addr
	port   uint16
	mapped bool
}

// lbGroup is a SO_REUSEPORT_LB group (struct inpcblbgroup). A TCP socket
// is a member from its bind, and only listening members take connections;
// a UDP socket takes datagrams from its bind and leaves the group when it
// connects. The group is freed when its last member that took connections
// or datagrams leaves it with no other members left; one whose TCP members
// all leave before listening stays, empty (seen on FreeBSD 15.1: it still
// hides the wildcard's group).
type lbGroup struct {
	members []*Socket
	seq     int // order of creation: of two groups on one address the newest is found
}

func (g *lbGroup) newer(h *lbGroup) bool { return h == nil || g != nil && g.seq > h.seq }

// bucket is the state Linux keeps for a bound port (inet_bind_bucket)
// besides its owners: the fast paths that let a bind skip the conflict
// check.
type bucket struct {
	fastreuse     bool // every owner had SO_REUSEADDR and was not listening
	fastreuseport int  // 0, fastReuseportAny or fastReuseportStrict
	fast          Socket
}

const (
	fastReuseportAny    = 1
	fastReuseportStrict = 2
)

// New returns a kernel with no sockets. Ephemeral binds choose among the
// ports they may take with rng.
func New(os OS, lo, hi uint16, rng *rand.Rand) *Kernel {
	return &Kernel{OS: os, Lo: lo, Hi: hi, rng: rng, buckets: map[uint16]*bucket{}, groups: map[groupKey]*lbGroup{}}
}

// Open creates a socket. On OpenBSD every AF_INET6 socket is IPv6-only.
func (k *Kernel) Open(f Family, o Options, owner string) *Socket {
	if k.OS == OpenBSD && f == 6 {
		o.V6Only = true
	}
	k.nextID++
	return &Socket{ID: k.nextID, Family: f, Opts: o, Owner: owner}
}

// SetV6Only sets IPV6_V6ONLY before bind. OpenBSD refuses to clear it.
func (k *Kernel) SetV6Only(s *Socket, on bool) error {
	if k.OS == OpenBSD && !on {
		return syscall.EINVAL
	}
	s.Opts.V6Only = on
	return nil
}

// Bind binds s to a; port 0 picks an ephemeral port. It returns
// EADDRINUSE (or EACCES, Windows) when the kernel would.
func (k *Kernel) Bind(s *Socket, a netip.AddrPort) (uint16, error) {
	if s.Bound || s.Closed {
		return 0, syscall.EINVAL
	}
	addr, err := k.prepare(s, a.Addr())
	if err != nil {
		return 0, err
	}
	port := a.Port()
	if port == 0 {
		if port, err = k.ephemeral(s, addr); err != nil {
			return 0, err
		}
		k.PlaceEphemeral(s, addr, port)
		return port, nil
	} else if err := k.check(s, addr, port); err != nil {
		return 0, err
	}
	k.Place(s, addr, port)
	return port, nil
}

// PlaceEphemeral is Place for a port an ephemeral search gave, which the
// kernel remembers (NetBSD).
func (k *Kernel) PlaceEphemeral(s *Socket, addr netip.Addr, port uint16) {
	k.Place(s, addr, port)
	k.lastPort = port
}

// prepare readies s for a bind to addr and returns the address as the
// kernel binds it: a specific IPv6 address makes a Linux socket
// IPv6-only (inet6_bind), and an IPv4-mapped one makes an AF_INET6 socket
// an AF_INET one (Mapped), which IPV6_V6ONLY forbids.
func (k *Kernel) prepare(s *Socket, addr netip.Addr) (netip.Addr, error) {
	if addr.Is4In6() && (s.Family == 6 || s.Mapped) {
		if s.Opts.V6Only {
			if k.OS == FreeBSD {
				return addr, syscall.EADDRNOTAVAIL // seen on FreeBSD 15.1
			}
			return addr, syscall.EINVAL // Linux's inet6_bind
		}
		s.Family, s.Mapped = 4, true
		return addr.Unmap(), nil
	}
	if (s.Family == 4) != addr.Is4() {
		return addr, syscall.EAFNOSUPPORT
	}
	if k.OS == Linux && s.Family == 6 && !addr.IsUnspecified() && k.has(LinuxSpecificV6Only) {
		s.Opts.V6Only = true
	}
	return addr, nil
}

// CanBind reports whether s could bind a explicitly now, without binding.
func (k *Kernel) CanBind(s *Socket, a netip.AddrPort) error {
	saved := *s
	defer func() { *s = saved }()
	addr, err := k.prepare(s, a.Addr())
	if err != nil {
		return err
	}
	return k.check(s, addr, a.Port())
}

// EphemeralPorts returns every port an ephemeral bind of s to addr may
// land on now. For an IPv4-mapped addr it makes s Mapped.
func (k *Kernel) EphemeralPorts(s *Socket, addr netip.Addr) []uint16 {
	addr, err := k.prepare(s, addr)
	if err != nil {
		return nil
	}
	if k.OS == NetBSD {
		return k.netbsdEphemeral(s, addr)
	}
	var ports []uint16
	for p := int(k.Lo); p <= int(k.Hi); p++ {
		if k.ephemeralOK(s, addr, uint16(p)) {
			ports = append(ports, uint16(p))
		}
	}
	return ports
}

func (k *Kernel) ephemeral(s *Socket, addr netip.Addr) (uint16, error) {
	ports := k.EphemeralPorts(s, addr)
	if len(ports) == 0 {
		// Linux says EADDRINUSE; the BSDs EADDRNOTAVAIL. The binding
		// algorithms treat both as "no port here".
		if k.OS == Linux || k.OS == Windows {
			return 0, syscall.EADDRINUSE
		}
		return 0, syscall.EADDRNOTAVAIL
	}
	return ports[k.rng.IntN(len(ports))], nil
}

// Listen starts listening. Linux checks the port again (inet_csk_listen_start).
func (k *Kernel) Listen(s *Socket) error {
	if !s.Bound || s.Closed {
		return syscall.EINVAL
	}
	if k.UDP {
		return nil // a bound UDP socket receives already
	}
	if k.OS == Linux && k.has(LinuxListenRecheck) {
		// inet_csk_listen_start marks the socket listening, then takes the
		// port again: a bound socket of SO_REUSEADDR may meet a conflict
		// here that its bind did not.
		s.Listening = true
		if !k.linuxFastPath(s) {
			for _, t := range k.bound {
				if t != s && t.Port == s.Port && k.linuxOverlap(s, s.Addr, t) && k.linuxConflict(s, t) {
					s.Listening = false
					return syscall.EADDRINUSE
				}
			}
		}
		k.updateFastReuse(s)
	}
	s.Listening = true
	return nil
}

// Close closes s. A connected socket closed first by its owner stays in
// the kernel in TIME_WAIT, holding its port, until Expire.
func (k *Kernel) Close(s *Socket) {
	s.listened = s.Listening
	k.leaveGroup(s, s.Listening)
	s.Closed, s.Listening = true, false
	if s.Connected && !k.UDP {
		s.TimeWait = true
		return
	}
	k.remove(s)
}

// leaveGroup takes s out of its SO_REUSEPORT_LB group, freeing the group
// if s was its last member and took connections (in_pcbremlbgrouphash).
func (k *Kernel) leaveGroup(s *Socket, took bool) {
	key := groupKey{s.Family, s.Addr, s.Port, s.Mapped && k.has(FreeBSDLBMappedApart)}
	g := k.groups[key]
	if g == nil || !slices.Contains(g.members, s) {
		return
	}
	g.members = slices.DeleteFunc(g.members, func(t *Socket) bool { return t == s })
	if len(g.members) == 0 && (took || !k.has(FreeBSDLBStaleGroup)) {
		delete(k.groups, key)
	}
}

// Expire ends every TIME_WAIT.
func (k *Kernel) Expire() {
	for _, s := range k.Sockets() {
		if s.TimeWait {
			k.remove(s)
		}
	}
}

func (k *Kernel) remove(s *Socket) {
	k.bound = slices.DeleteFunc(k.bound, func(t *Socket) bool { return t == s })
	if !slices.ContainsFunc(k.bound, func(t *Socket) bool { return t.Port == s.Port }) {
		delete(k.buckets, s.Port)
	}
}

// Connect connects the bound socket s to peer, an address of this host of
// s's family. Only the BSD models know connected sockets. A socket bound
// to the wildcard takes the peer's address as its own, as source address
// selection picks for a local peer. Connecting a dual-stack socket to an
// IPv6 peer makes it IPv6-only, whether or not the connect succeeds
// (FreeBSD's tcp6_usr_connect and XNU's tcp_usr_connect_common clear
// INP_IPV4 first), and FreeBSD refuses to connect a TCP socket with
// SO_REUSEPORT_LB (seen on FreeBSD 15.1).
func (k *Kernel) Connect(s *Socket, peer netip.Addr) error {
	if !s.Bound || s.Closed || (s.Listening && !k.UDP) || s.Connected || familyOf(peer) != s.Family {
		return syscall.EINVAL
	}
	if s.dual() && k.has(BSDConnectV6Only) {
		s.Opts.V6Only = true
	}
	if k.OS == FreeBSD && !k.UDP && s.Opts.ReusePortLB && k.has(FreeBSDLBNoConnect) {
		return syscall.EOPNOTSUPP
	}
	if k.OS == FreeBSD && k.UDP && k.has(FreeBSDLBUDPConnectLeaves) {
		k.leaveGroup(s, true)
	}
	if s.Addr.IsUnspecified() {
		s.Addr = peer
	}
	s.Connected = true
	s.Listening = false // a connected UDP socket takes only its peer's datagrams
	return nil
}

// Sockets returns the bound sockets, newest first.
func (k *Kernel) Sockets() []*Socket { return slices.Clone(k.bound) }

// Place records s as bound to addr:port without any check. Tests use it to
// follow a real kernel's choice of an ephemeral port.
func (k *Kernel) Place(s *Socket, addr netip.Addr, port uint16) {
	addr, _ = k.prepare(s, addr)
	s.Addr, s.Port, s.Bound = addr, port, true
	s.Listening = k.UDP // a bound UDP socket receives
	if k.OS == Linux && !k.UDP {
		k.updateFastReuse(s)
	}
	k.bound = slices.Insert(k.bound, 0, s)
	k.tick++
	s.head = k.tick
	// in_pcbinslbgrouphash puts no AF_INET6 socket on the IPv4 wildcard
	// (dual-stack, or ::ffff:0.0.0.0) in a group.
	v6wild := s.dual() || s.Mapped && addr.IsUnspecified()
	if k.OS == FreeBSD && s.Opts.ReusePortLB && (!v6wild || !k.has(FreeBSDLBNoDual)) {
		key := groupKey{s.Family, addr, port, s.Mapped && k.has(FreeBSDLBMappedApart)}
		g := k.groups[key]
		if g == nil {
			k.groupID++
			g = &lbGroup{seq: k.groupID}
			k.groups[key] = g
		}
		g.members = append(g.members, s)
	}
}

// Deliver returns the sockets that a new connection to dst may reach:
// one, or several that share the best match (SO_REUSEPORT groups), or
// none. On FreeBSD and macOS the socket may be bound but not listening:
// the kernel finds it and refuses or drops the connection. On NetBSD, as
// in its kernel, the lookup moves the socket it finds to the front.
func (k *Kernel) Deliver(dst netip.AddrPort) []*Socket {
	switch {
	case k.OS == FreeBSD:
		return k.freebsdDeliver(dst)
	case k.OS == NetBSD:
		return k.netbsdDeliver(dst)
	case k.OS == Darwin, k.OS == OpenBSD:
		return k.xnuDeliver(dst)
	case k.OS == Linux && k.UDP:
		return k.linuxUDPDeliver(dst)
	}
	best, bestScore := []*Socket(nil), 0
	for _, s := range k.bound {
		if !s.Listening || s.Port != dst.Port() {
			continue
		}
		score := k.score(s, dst.Addr())
		switch {
		case score > bestScore:
			best, bestScore = []*Socket{s}, score
		case score == bestScore && score > 0:
			best = append(best, s)
		}
	}
	if k.OS != Linux && len(best) > 1 {
		// Windows takes the first socket of the list.
		best = best[:1]
	}
	return best
}

// takes reports whether the unconnected socket s, seen from a lookup of
// dst's family, is bound to dst's address (exact) or to the wildcard.
func (k *Kernel) takes(s *Socket, dst netip.AddrPort) (exact, wild bool) {
	if s.Port != dst.Port() || s.Connected || s.TimeWait || !bsdSees(s, familyOf(dst.Addr())) {
		return false, false
	}
	if !s.Listening && !k.has(BSDBoundTakes) {
		return false, false
	}
	a := bsdAddr(s, familyOf(dst.Addr()))
	return a == dst.Addr(), a.IsUnspecified()
}

func unspecifiedOf(f Family) netip.Addr {
	if f == 4 {
		return netip.IPv4Unspecified()
	}
	return netip.IPv6Unspecified()
}

func familyOf(a netip.Addr) Family {
	if a.Is4() {
		return 4
	}
	return 6
}

// freebsdDeliver is in_pcblookup_hash_smr and its IPv6 twin. First the
// SO_REUSEPORT_LB groups of the port (lbGroup): the group on dst's address
// if there is one (of an AF_INET group and an IPv4-mapped one, the newest:
// seen), else the group on the wildcard; a group chosen with no
// listening member passes the connection on (seen on FreeBSD 15.1). Then
// the first unconnected socket in the hash chain's order, specific
// addresses before wildcards, each newest first, listening or not.
func (k *Kernel) freebsdDeliver(dst netip.AddrPort) []*Socket {
	f := familyOf(dst.Addr())
	g := k.groups[groupKey{f, dst.Addr(), dst.Port(), false}]
	if m := k.groups[groupKey{f, dst.Addr(), dst.Port(), true}]; m != nil && (g == nil || k.has(FreeBSDLBNewestGroup) && m.newer(g)) {
		g = m
	}
	if g == nil {
		g = k.groups[groupKey{f, unspecifiedOf(f), dst.Port(), false}]
	}
	if g != nil && k.has(FreeBSDLBGroups) {
		var active []*Socket
		for _, s := range g.members {
			if s.Listening || !k.has(FreeBSDLBPending) {
				active = append(active, s)
			}
		}
		if len(active) > 0 {
			return active
		}
	}
	var exact, wild, inet, mapped, mappedWild *Socket
	for _, s := range k.bound {
		e, w := k.takes(s, dst)
		switch {
		case e && exact == nil:
			exact = s
		case w && s.Mapped && k.has(FreeBSDMappedWildcardLast):
			// _in_pcbinshash_wild puts a wildcard bound to
			// ::ffff:0.0.0.0 at the end of the chain: the oldest last.
			mappedWild = s
		case w && wild == nil:
			wild = s
		}
		switch {
		case w && s.Family == f && inet == nil:
			inet = s
		case w && s.Family != f && mapped == nil:
			mapped = s
		}
	}
	if !k.has(FreeBSDNewestWildcard) {
		// The old order: an AF_INET wildcard before a dual-stack one.
		wild = cmp.Or(inet, mapped)
	}
	wild = cmp.Or(wild, mappedWild)
	first, second := exact, wild
	if !k.has(BSDExactFirst) {
		first, second = wild, exact
	}
	if s := cmp.Or(first, second); s != nil {
		return []*Socket{s}
	}
	return nil
}

// xnuDeliver is XNU's in_pcblookup_hash_locked and its IPv6 twin: the
// newest socket on exactly dst's address, else the oldest AF_INET6 or
// AF_INET wildcard of dst's family, else (IPv4) the oldest dual-stack one.
func (k *Kernel) xnuDeliver(dst netip.AddrPort) []*Socket {
	var exact, newest, wild, mapped *Socket
	for _, s := range k.bound {
		e, w := k.takes(s, dst)
		switch {
		case e && exact == nil:
			exact = s
		case w && newest == nil:
			newest = s
		}
		switch {
		case w && s.Family == familyOf(dst.Addr()) && !s.Mapped:
			wild = s
		case w:
			mapped = s // an AF_INET6 socket taking IPv4
		}
	}
	any := cmp.Or(wild, mapped)
	if !k.has(XNUOldestWildcard) {
		// FreeBSD 15's order: the newest wildcard of either family.
		any = newest
	}
	first, second := exact, any
	if !k.has(BSDExactFirst) {
		first, second = any, exact
	}
	if s := cmp.Or(first, second); s != nil {
		return []*Socket{s}
	}
	return nil
}

// score ranks how well a listening socket matches a destination address
// on Linux and Windows, 0 for no match: for IPv4, an exact address before
// a wildcard, and within each an AF_INET socket before an AF_INET6 one
// (bound to ::ffff:a.b.c.d, or dual-stack on [::]), as Linux's
// compute_score and its lookup of the exact address first rank them.
func (k *Kernel) score(s *Socket, dst netip.Addr) int {
	inet6 := s.Family == 6 || s.Mapped
	if dst.Is4() {
		switch {
		case s.Family == 4 && s.Addr == dst:
			if inet6 == k.has(LinuxInetExactFirst) {
				return 5
			}
			return 6
		case s.Family == 4 && s.Addr.IsUnspecified(), s.dual():
			if inet6 == k.has(LinuxInetWildFirst) {
				return 2
			}
			return 4
		}
		return 0
	}
	switch {
	case s.Family == 6 && s.Addr == dst:
		return 3
	case s.Family == 6 && s.Addr.IsUnspecified():
		return 2
	}
	return 0
}

// check decides an explicit bind of s to addr:port.
func (k *Kernel) check(s *Socket, addr netip.Addr, port uint16) error {
	switch {
	case k.OS == NetBSD:
		return k.netbsdCheck(s, addr, port)
	case k.OS == Linux && k.UDP:
		if k.linuxUDPInUse(s, addr, port, false) {
			return syscall.EADDRINUSE
		}
		return nil
	case k.OS == Linux:
		probe := *s
		probe.Addr, probe.Port = addr, port
		if k.linuxFastPath(&probe) {
			return nil
		}
		for _, t := range k.bound {
			if t.Port == port && k.linuxOverlap(s, addr, t) && k.linuxConflict(s, t) {
				return syscall.EADDRINUSE
			}
		}
		return nil
	case k.OS == Windows:
		return k.windowsCheck(s, addr, port)
	}
	return k.bsdCheck(s, addr, port)
}

// linuxFastPath reports whether inet_csk_get_port lets s take its port
// without the conflict check: the port's owners all had SO_REUSEADDR and s
// has it and is not listening, or the bucket's SO_REUSEPORT fast path
// matches s. The second compares s with the one socket the bucket
// recorded only, so it can pass a socket that conflicts with another
// owner.
func (k *Kernel) linuxFastPath(s *Socket) bool {
	b := k.buckets[s.Port]
	if b == nil || !k.has(LinuxFastReuse) {
		return false
	}
	if b.fastreuse && s.Opts.ReuseAddr && !s.Listening {
		return true
	}
	return reuseportMatch(b, s)
}

// reuseportMatch is sk_reuseport_match.
func reuseportMatch(b *bucket, s *Socket) bool {
	if b.fastreuseport == 0 || !s.Opts.ReusePort || b.fast.UID != s.UID {
		return false
	}
	if b.fastreuseport == fastReuseportAny {
		return true
	}
	f := &b.fast
	sOnly := s.Family == 6 && s.Opts.V6Only
	if f.Family == 6 {
		// ipv6_rcv_saddr_equal(fast, s), the fast address matching as a
		// wildcard, s's not.
		sMapped := s.Family == 4
		switch {
		case f.Addr.IsUnspecified() && s.Family == 6 && s.Addr.IsUnspecified():
			return true
		case f.Addr.IsUnspecified() && !(f.Opts.V6Only && sMapped):
			return true
		}
		return s.Family == 6 && f.Addr == s.Addr
	}
	// ipv4_rcv_saddr_equal(fast, s): an AF_INET6 socket's IPv4 address is
	// 0.0.0.0 for [::] and none for a specific address, which is IPv6-only.
	if sOnly {
		return false
	}
	sv4 := s.Addr
	if s.Family == 6 {
		sv4 = netip.IPv4Unspecified()
	}
	return sv4 == f.Addr || f.Addr.IsUnspecified()
}

// updateFastReuse is inet_csk_update_fastreuse, after s took its port.
func (k *Kernel) updateFastReuse(s *Socket) {
	reuse := s.Opts.ReuseAddr && !s.Listening
	b := k.buckets[s.Port]
	owned := slices.ContainsFunc(k.bound, func(t *Socket) bool { return t.Port == s.Port })
	if b == nil || !owned {
		b = &bucket{fastreuse: reuse}
		if s.Opts.ReusePort {
			b.fastreuseport, b.fast = fastReuseportAny, *s
		}
		k.buckets[s.Port] = b
		return
	}
	if !reuse {
		b.fastreuse = false
	}
	switch {
	case !s.Opts.ReusePort:
		b.fastreuseport = 0
	case !reuseportMatch(b, s):
		b.fastreuseport, b.fast = fastReuseportStrict, *s
	}
}

func (k *Kernel) ephemeralOK(s *Socket, addr netip.Addr, port uint16) bool {
	switch k.OS {
	case Linux:
		if k.UDP {
			return !k.linuxUDPInUse(s, addr, port, true)
		}
		// inet_csk_find_open_port: any overlapping owner rules a port out,
		// whatever the options (relax is false; autobind_reuse is off).
		if !k.has(LinuxEphemeralAnyOwner) {
			return k.check(s, addr, port) == nil
		}
		for _, t := range k.bound {
			if t.Port == port && k.linuxOverlap(s, addr, t) {
				return false
			}
		}
		return true
	case Windows:
		return k.windowsCheck(s, addr, port) == nil
	}
	wild := !s.Opts.reuse() || !k.has(BSDReuseExact)
	if s.Family == 4 {
		// XNU's in_pcbbind looks up wildcards for every implicit bind.
		xnuWild := k.OS != FreeBSD && k.has(XNUEphemeralV4Wild)
		return k.bsdLookup(4, addr, port, wild || xnuWild) == nil
	}
	if k.bsdLookup(6, addr, port, wild) != nil {
		return false
	}
	// FreeBSD's in_pcb_lport_dest asks the IPv4 lookup too for a
	// dual-stack socket; macOS's IPv6 search sees AF_INET6 sockets only.
	if k.OS == FreeBSD && !s.Opts.V6Only && addr.IsUnspecified() && k.has(FreeBSDDualEphemeralV4) {
		return k.bsdLookup(4, netip.IPv4Unspecified(), port, wild) == nil
	}
	return true
}

// linuxOverlap is inet_rcv_saddr_equal with wildcards matching: whether
// s, binding addr, and the bound t claim common addresses.
//
// An AF_INET6 socket on a specific address is IPv6-only (prepare): were it
// not, an AF_INET wildcard would claim it (ipv4_rcv_saddr_equal).
func (k *Kernel) linuxOverlap(s *Socket, addr netip.Addr, t *Socket) bool {
	sOnly := s.Family == 6 && s.Opts.V6Only && k.has(LinuxV6OnlyNoOverlap)
	tOnly := t.Family == 6 && t.Opts.V6Only && k.has(LinuxV6OnlyNoOverlap)
	switch {
	case s.Family == 4 && t.Family == 4:
		return addr == t.Addr || addr.IsUnspecified() || t.Addr.IsUnspecified()
	case s.Family == 4: // t is AF_INET6
		return !tOnly && (t.Addr.IsUnspecified() || addr.IsUnspecified())
	case t.Family == 4: // s is AF_INET6
		return addr.IsUnspecified() && !sOnly
	}
	return addr.IsUnspecified() || t.Addr.IsUnspecified() || addr == t.Addr
}

// linuxConflict is inet_csk_bind_conflict for one overlapping owner t of
// the port, for an explicit bind or a listen (relax and reuseport_ok).
func (k *Kernel) linuxConflict(s, t *Socket) bool {
	if s.Opts.ReuseAddr && t.Opts.ReuseAddr && !t.Listening && k.has(LinuxReuseAddr) {
		return false
	}
	return !(s.Opts.ReusePort && t.Opts.ReusePort && k.has(LinuxReusePort) && k.sameUser(s, t))
}

// sameUser reports whether SO_REUSEPORT may join s and t: they belong to
// one user (Linux: uid_eq of sk_uid).
func (k *Kernel) sameUser(s, t *Socket) bool {
	return s.UID == t.UID || !k.has(LinuxReusePortSameUser)
}

// bsdSees reports whether the BSD lookup of family f sees s.
func bsdSees(s *Socket, f Family) bool {
	if f == 6 {
		return s.Family == 6
	}
	return s.Family == 4 || s.dual()
}

// bsdAddr is the socket's local address as the lookup of family f reads it.
func bsdAddr(s *Socket, f Family) netip.Addr {
	if f == 4 && s.Family == 6 {
		return netip.IPv4Unspecified() // the IPv4 part of [::]
	}
	return s.Addr
}

// bsdLookup is in_pcblookup_local (f 4) or in6_pcblookup_local (f 6):
// with wild, the best fit among the port's sockets, connected and
// TIME_WAIT ones included, fewest wildcards first, the newest on a tie; a
// connected socket costs one more. Without wild, the newest unconnected
// socket on exactly that address. (FreeBSD also costs a dual-stack socket
// three more, INP_LOOKUP_MAPPED_PCB_COST, and raises the limit as much;
// that decides only which socket is found, which matters for the check
// between users, not modelled, and not whether one is.)
func (k *Kernel) bsdLookup(f Family, addr netip.Addr, port uint16, wild bool) *Socket {
	return k.bestFit(port, wild, func(t *Socket) (int, bool) {
		if !bsdSees(t, f) {
			return 0, false
		}
		return addrCost(bsdAddr(t, f), addr)
	})
}

// bestFit is the search of the BSDs' port lookups (in_pcblookup_local,
// NetBSD's in_pcblookup_port): among the sockets on port that cost
// accepts, the first of least cost, a connected or TIME_WAIT one at one
// more; without wild, only one of cost 0.
func (k *Kernel) bestFit(port uint16, wild bool, cost func(t *Socket) (int, bool)) *Socket {
	var match *Socket
	best := 3
	for _, t := range k.bound {
		if t.Port != port {
			continue
		}
		n, ok := cost(t)
		if !ok {
			continue
		}
		if t.Connected {
			if !k.has(BSDConnectedHolds) {
				continue
			}
			n++
		}
		if n > 0 && !wild || n >= best {
			continue
		}
		match, best = t, n
	}
	return match
}

// addrCost is what a socket on taddr costs a lookup of addr: 0 on that
// address, 1 where one of them is a wildcard; another address does not
// match.
func addrCost(taddr, addr netip.Addr) (int, bool) {
	switch {
	case taddr.IsUnspecified() && addr.IsUnspecified():
		return 0, true
	case taddr.IsUnspecified() || addr.IsUnspecified():
		return 1, true
	case taddr != addr:
		return 0, false
	}
	return 0, true
}

// bsdCheck is in_pcbbind (AF_INET) and in6_pcbbind (AF_INET6) for one
// user's sockets: a socket found refuses the bind unless both have
// SO_REUSEPORT or, on FreeBSD, both SO_REUSEPORT_LB.
func (k *Kernel) bsdCheck(s *Socket, addr netip.Addr, port uint16) error {
	if k.otherUserHolds(s, addr, port) {
		return syscall.EADDRINUSE
	}
	wild := !s.Opts.reuse() || !k.has(BSDReuseExact)
	shares := func(t *Socket) bool {
		return s.Opts.ReusePort && t.Opts.ReusePort && k.has(BSDReusePortShares) ||
			s.Opts.ReusePortLB && t.Opts.ReusePortLB && k.has(FreeBSDLBShares)
	}
	if s.Family == 4 {
		t := k.bsdLookup(4, addr, port, wild)
		// Two AF_INET6 sockets on the IPv4 wildcard, one of them bound
		// to ::ffff:0.0.0.0, do not refuse each other.
		v6wild := addr.IsUnspecified() && s.Mapped && t != nil && bsdAddr(t, 4).IsUnspecified() &&
			(t.Mapped || t.Family == 6) && k.has(BSDMappedWildcardsShare)
		if t != nil && !shares(t) && !v6wild {
			return syscall.EADDRINUSE
		}
		return nil
	}
	if t := k.bsdLookup(6, addr, port, wild); t != nil && !shares(t) {
		return syscall.EADDRINUSE
	}
	if k.OS != OpenBSD && !s.Opts.V6Only && addr.IsUnspecified() && k.has(BSDDualChecksIPv4) {
		// A dual-stack bind is refused by an IPv4 holder unless that is an
		// AF_INET wildcard, which keeps its IPv4 traffic.
		t := k.bsdLookup(4, netip.IPv4Unspecified(), port, wild)
		if t != nil && !shares(t) && !(t.Family == 4 && !t.Mapped && t.Addr.IsUnspecified() && k.has(BSDInetWildcardExempt)) {
			return syscall.EADDRINUSE
		}
	}
	return nil
}

// otherUserHolds is the BSDs' check for an unprivileged socket's bind
// (FreeBSD's in_pcbbind_setup and in6_pcbbind, XNU's in_pcbbind and
// in6_pcbbind): a wildcard lookup, whatever the binder's options, finds a
// socket of another user, which refuses the bind; on macOS not when both
// are on the wildcard. A connected TCP socket is passed over. On FreeBSD a
// dual-stack bind asks the IPv4 lookup too.
//
// The FreeBSD source we read exempts two wildcards when the one found has
// SO_REUSEPORT_LB and not SO_REUSEPORT; the FreeBSD 15.1 kernel refuses
// those too, with every combination of the binder's options (seen in the
// VM), and the model follows the kernel.
func (k *Kernel) otherUserHolds(s *Socket, addr netip.Addr, port uint16) bool {
	if s.UID == 0 || !k.has(BSDOtherUser) {
		return false
	}
	refuses := func(f Family, a netip.Addr) bool {
		t := k.bsdLookup(f, a, port, true)
		if t == nil || t.UID == s.UID || (t.Connected && !k.UDP) {
			return false
		}
		return k.OS == FreeBSD || !a.IsUnspecified() || !bsdAddr(t, f).IsUnspecified()
	}
	if refuses(s.Family, addr) {
		return true
	}
	return k.OS == FreeBSD && s.Family == 6 && !s.Opts.V6Only && addr.IsUnspecified() &&
		refuses(4, netip.IPv4Unspecified())
}

// windowsFootprint is what a socket holds: a dual-stack socket holds the
// wildcard of both families.
func windowsFootprint(s *Socket, addr netip.Addr) map[Family]netip.Addr {
	fp := map[Family]netip.Addr{s.Family: addr}
	if s.Family == 6 && !s.Opts.V6Only && addr.IsUnspecified() {
		fp[4] = netip.IPv4Unspecified()
	}
	return fp
}

// windowsCheck applies the WSK table to every pair of overlapping claims.
func (k *Kernel) windowsCheck(s *Socket, addr netip.Addr, port uint16) error {
	mine := windowsFootprint(s, addr)
	for _, t := range k.bound {
		if t.Port != port {
			continue
		}
		for f, theirs := range windowsFootprint(t, t.Addr) {
			a, ok := mine[f]
			if !ok || (!a.IsUnspecified() && !theirs.IsUnspecified() && a != theirs) {
				continue
			}
			if err := windowsTable(s.Opts, a.IsUnspecified(), t.Opts, theirs.IsUnspecified()); err != nil {
				return err
			}
		}
	}
	return nil
}

// windowsTable is the result of a second bind against a first on
// overlapping addresses, "Sharing Transport Addresses" (WSK). CHECK, the
// security check, passes: every socket here has one owner.
func windowsTable(second Options, secondWild bool, first Options, firstWild bool) error {
	const ok, inuse, denied = 0, 1, 2
	col := 0 // first: default
	switch {
	case first.Exclusive:
		col = 4
	case first.ReuseAddr:
		col = 2
	}
	if !firstWild {
		col++
	}
	row := 0 // second: default
	switch {
	case second.Exclusive:
		row = 4
	case second.ReuseAddr:
		row = 2
	}
	if !secondWild {
		row++
	}
	table := [6][6]int{
		// first: default W, S; SO_REUSEADDR W, S; SO_EXCLUSIVEADDRUSE W, S
		{inuse, ok, inuse, ok, inuse, ok},          // second default, wildcard
		{ok, inuse, ok, denied, denied, inuse},     // second default, specific
		{denied, ok, ok, ok, denied, ok},           // second SO_REUSEADDR, wildcard
		{ok, denied, ok, ok, denied, denied},       // second SO_REUSEADDR, specific
		{inuse, inuse, inuse, inuse, inuse, inuse}, // second SO_EXCLUSIVEADDRUSE, wildcard
		{ok, inuse, ok, inuse, denied, inuse},      // second SO_EXCLUSIVEADDRUSE, specific
	}
	switch table[row][col] {
	case inuse:
		return syscall.EADDRINUSE
	case denied:
		return syscall.EACCES
	}
	return nil
}

// linuxUDPInUse is udp_lib_lport_inuse: the port's sockets, newest first,
// that share an address with s (wildcards matching) hold it, unless both
// have SO_REUSEADDR, or both SO_REUSEPORT. For an explicit bind the first
// SO_REUSEPORT partner found ends the search with the port free, even
// with a holder later in the chain; the ephemeral search (bitmap) only
// passes over such partners.
func (k *Kernel) linuxUDPInUse(s *Socket, addr netip.Addr, port uint16, ephemeral bool) bool {
	for _, t := range k.linuxUDPChain() {
		if t == s || t.Port != port || t.Closed {
			continue
		}
		if s.Opts.ReuseAddr && t.Opts.ReuseAddr && k.has(LinuxUDPReuseAddr) {
			continue
		}
		if !k.linuxOverlap(s, addr, t) {
			continue
		}
		if s.Opts.ReusePort && t.Opts.ReusePort && k.has(LinuxUDPReusePort) && k.sameUser(s, t) {
			if !ephemeral && k.has(LinuxUDPReusePortEarly) {
				return false
			}
			continue
		}
		return true
	}
	return false
}

// linuxUDPChain is the order in which the kernel finds a port's sockets:
// each added at the head, but an AF_INET6 socket with SO_REUSEPORT (bound
// to an IPv4-mapped address too) at the tail. The 6.18 kernel binds and
// delivers in this order (seen); udp_lib_get_port, read, puts only the
// secondary chain's sockets at the tail.
func (k *Kernel) linuxUDPChain() []*Socket {
	var head, tail []*Socket
	for _, s := range k.bound { // newest first
		if (s.Family == 6 || s.Mapped) && s.Opts.ReusePort && k.has(LinuxUDPReusePortTail) {
			tail = append([]*Socket{s}, tail...)
		} else {
			head = append(head, s)
		}
	}
	return append(head, tail...)
}

// linuxUDPDeliver is udp4_lib_lookup2 and udp6_lib_lookup2: the sockets
// bound to dst's address first, else those on the wildcard; among them an
// AF_INET socket before an AF_INET6 one, for IPv4; on a tie the first in
// the chain, where sockets are added at the head but AF_INET6 ones with
// SO_REUSEPORT at the tail; a SO_REUSEPORT group of the same address and
// family shares the winner's place.
func (k *Kernel) linuxUDPDeliver(dst netip.AddrPort) []*Socket {
	chain := k.linuxUDPChain()
	for _, exact := range []bool{true, false} {
		var best *Socket
		bestScore := 0
		for _, s := range chain {
			if !s.Listening || s.Port != dst.Port() {
				continue
			}
			e, w := k.linuxUDPMatch(s, dst.Addr())
			if !(exact && e || !exact && w) {
				continue
			}
			score := 1
			if s.Family == 4 && !s.Mapped && dst.Addr().Is4() && k.has(LinuxInetWildFirst) {
				score = 2
			}
			if score > bestScore {
				best, bestScore = s, score
			}
		}
		if best == nil {
			continue
		}
		group := []*Socket{best}
		if best.Opts.ReusePort {
			for _, s := range chain {
				if s != best && s.Listening && s.Port == best.Port && s.Opts.ReusePort && s.Addr == best.Addr &&
					s.Family == best.Family && s.Mapped == best.Mapped {
					group = append(group, s)
				}
			}
		}
		return group
	}
	return nil
}

// linuxUDPMatch reports whether s takes datagrams to dst on its exact
// address or on the wildcard.
func (k *Kernel) linuxUDPMatch(s *Socket, dst netip.Addr) (exact, wild bool) {
	if dst.Is4() {
		if s.Family == 6 && (s.Opts.V6Only || !s.Addr.IsUnspecified()) {
			return false, false
		}
		a := s.Addr
		if s.Family == 6 {
			a = netip.IPv4Unspecified()
		}
		return a == dst, a.IsUnspecified()
	}
	if s.Family != 6 {
		return false, false
	}
	return s.Addr == dst, s.Addr.IsUnspecified()
}
