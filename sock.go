package dualstack

import (
	"net"
	"net/netip"
	"syscall"
)

// This file holds the small socket interface that the binding algorithms
// in bind.go run over. The real implementation makes system calls
// (sock_unix.go, sock_windows.go); tests substitute a model of another
// operating system's bind rules, so that the macOS, BSD and Windows
// algorithms run on Linux too.

// family is an address family, independent of the OS constants.
type family uint8

const (
	inet4 family = 4
	inet6 family = 6
)

func (f family) String() string {
	if f == inet4 {
		return "IPv4"
	}
	return "IPv6"
}

// proto is the transport protocol of a socket.
type proto uint8

const (
	tcp proto = iota
	udp
)

// network returns the network name that [net.ListenConfig.Control] is
// given for a socket of this protocol and family: "tcp4", "udp6" and so on.
func (p proto) network(f family) string {
	name := "tcp"
	if p == udp {
		name = "udp"
	}
	if f == inet4 {
		return name + "4"
	}
	return name + "6"
}

// sockOpts are what a socket is opened with: everything that is set on it
// before it is bound.
type sockOpts struct {
	proto  proto
	family family
	// v6only is the value of IPV6_V6ONLY on an AF_INET6 socket. It is
	// always set explicitly, whatever the OS default.
	v6only bool
	// reuseAddr sets SO_REUSEADDR. It is left off otherwise.
	reuseAddr bool
	// exclusive sets SO_EXCLUSIVEADDRUSE (Windows).
	exclusive bool
	// mptcp asks for a Multipath TCP socket where the OS has them (Linux),
	// falling back to TCP, as net.ListenConfig does.
	mptcp bool
	// control is the user's [net.ListenConfig.Control], run after our
	// options and before bind. Probes have none.
	control func(network, address string, c syscall.RawConn) error
	// private reports that the socket is on a port the listener picks
	// (port 0): after control, no option that lets another socket share
	// the port may be on, but SO_REUSEADDR where we set it ourselves.
	private bool
}

// sockOption is a SOL_SOCKET option, by number and name.
type sockOption struct {
	opt  int
	name string
}

// controlSharingError is the failure of a socket on a port the listener
// picks, on which the user's Control turned on an option that lets another
// socket share the port.
type controlSharingError struct{ option string }

func (e controlSharingError) Error() string {
	return "dualstack: Control set " + e.option + " on a socket of a port that Listen picks (port 0): " +
		"other sockets could share the port and take its traffic; to share a port on purpose, listen on an explicit one"
}

// socketAPI creates sockets.
type socketAPI interface {
	socket(o sockOpts) (socket, error)
}

// socket is one socket under construction. Every error it returns is an
// *os.SyscallError naming the call, or the error of the user's Control.
type socket interface {
	// bind binds the socket and returns the port it is bound to, which is
	// the one chosen by the kernel when a.Port() is 0.
	bind(a netip.AddrPort) (port uint16, err error)
	// listen starts listening (TCP); for UDP it does nothing.
	listen() error
	// close closes the socket.
	close() error
}

// tcpSocket is a socket that can become a [*net.TCPListener]. The
// conversion takes ownership: afterwards only the listener is closed.
type tcpSocket interface {
	socket
	tcpListener() (*net.TCPListener, error)
}

// udpSocket is a socket that can become a [*net.UDPConn]. The conversion
// takes ownership: afterwards only the connection is closed.
type udpSocket interface {
	socket
	udpConn() (*net.UDPConn, error)
}

// singleHow says how an OS binds Single mode's dual-stack socket.
type singleHow uint8

const (
	// singleNone: the OS cannot, or we cannot show that it can, bind a
	// dual-stack socket safely.
	singleNone singleHow = iota
	// singleDirect: one bind of [::]:P with IPV6_V6ONLY=0. The kernel
	// checks both families, for explicit and ephemeral ports (Linux).
	singleDirect
	// singleHeldProbe: bind an AF_INET probe on 0.0.0.0:P (P may be 0)
	// to learn a port no IPv4 socket holds, bind [::]:P with
	// IPV6_V6ONLY=0 while the probe is held, then close the probe (macOS,
	// FreeBSD).
	singleHeldProbe
)

// osFacts are the facts about one OS that the binding algorithms depend
// on. The per-OS files select the host's; tests run the algorithms with
// the facts of other systems against models of their kernels.
type osFacts struct {
	goos string
	// dualProbe reports whether an ephemeral bind of a dual-stack [::]:0
	// socket skips every port that either family holds, so that one such
	// probe picks the port for both halves (Linux). Elsewhere an AF_INET
	// socket bound first picks it.
	dualProbe bool
	// single says how Single mode binds, and singleWhy why it cannot.
	single    singleHow
	singleWhy string
	// reuseAddr reports whether explicit ports get SO_REUSEADDR, as Go's
	// net package sets it on listeners. Ephemeral binds never get it: on
	// the BSDs, macOS and illumos it widens the port search to ports
	// that other sockets hold.
	reuseAddr bool
	// exclusive reports whether every socket gets SO_EXCLUSIVEADDRUSE.
	exclusive bool
	// guards reports whether later binders must be kept off the port by
	// guard sockets (see guardKind). On these kernels a bind with
	// SO_REUSEADDR or SO_REUSEPORT, explicit or (FreeBSD both families,
	// macOS IPv6) ephemeral, is checked against sockets on exactly its
	// own address only, so it succeeds on 127.0.0.1:P or [::1]:P next to
	// a wildcard listener on P, and being more specific it then takes that
	// address's traffic; and a SO_REUSEPORT_LB group on a wildcard
	// (FreeBSD) is found before a listener on a specific address. Seen on
	// FreeBSD 15.1 (in_pcbbind_setup, in_pcb_lport_dest,
	// in_pcblookup_hash_smr in sys/netinet/in_pcb.c); read in XNU's
	// in_pcbbind (bsd/netinet/in_pcb.c) and in6_pcbsetport
	// (bsd/netinet6/in6_src.c), and in OpenBSD's in_pcbbind_locked,
	// in_pcbaddrisavail_lock and in_pcbpickport (sys/netinet/in_pcb.c).
	// Linux refuses such binds next to a listening socket
	// (inet_csk_bind_conflict) and needs none.
	guards bool
	// searchPorts reports whether Listen searches the ephemeral range
	// itself with explicit binds (binder.search) instead of binding port
	// 0: NetBSD's search, once a random pass finds no free port, returns
	// the port below the last one it gave, unchecked, even one another
	// socket listens on (seen on the 2016 stack; portalgo_randport in
	// sys/netinet/portalgo.c 1.9 replaces the error with the result of
	// pcb_getports). Our own held pickers make that happen in a crowded
	// range.
	searchPorts bool
	// deniedIsTaken reports whether a bind refused for access (EACCES)
	// means that the port is taken, so that an ephemeral attempt should
	// try another: Windows answers so for a port another socket holds with
	// SO_EXCLUSIVEADDRUSE, and for ports in its reserved ranges.
	deniedIsTaken bool
}

// factsFor returns the facts of the OS named by a GOOS value.
func factsFor(goos string) osFacts {
	switch goos {
	case "linux", "android":
		return osFacts{goos: goos, dualProbe: true, single: singleDirect, reuseAddr: true}
	case "darwin", "ios", "freebsd":
		return osFacts{goos: goos, single: singleHeldProbe, reuseAddr: true, guards: true}
	case "openbsd":
		return osFacts{goos: goos, reuseAddr: true, guards: true, single: singleNone,
			singleWhy: "the kernel does not let IPV6_V6ONLY be cleared"}
	case "netbsd":
		return osFacts{goos: goos, reuseAddr: true, guards: true, searchPorts: true, single: singleNone,
			singleWhy: "the kernel's IPv4 port search does not look at AF_INET6 sockets, nor does an IPv4 bind with SO_REUSEADDR at a dual-stack one, and IPv4 goes to AF_INET sockets first: another program's AF_INET socket can take a dual-stack socket's port and its IPv4 traffic (seen on NetBSD's 2016 stack)"}
	case "dragonfly":
		return osFacts{goos: goos, reuseAddr: true, single: singleNone,
			singleWhy: "the kernel does not let IPV6_V6ONLY be cleared"}
	case "windows":
		return osFacts{goos: goos, exclusive: true, deniedIsTaken: true, single: singleNone,
			singleWhy: "no safe way to bind a dual-stack socket has been verified there; use Separate"}
	}
	// NetBSD, illumos and the rest: Separate with the AF_INET socket bound
	// first is safe wherever the kernel checks an explicit IPv6 bind
	// against IPv6 holders, which every kernel does.
	return osFacts{goos: goos, reuseAddr: true, single: singleNone,
		singleWhy: "no safe way to bind a dual-stack socket has been verified there; use Separate"}
}
