// Package dualstack listens on IPv4 and IPv6 safely: on one port, for both
// families, whatever the OS default of IPV6_V6ONLY, and never on a port
// whose IPv4 half another process holds.
//
// A program that listens on [::] may or may not take IPv4 clients: that
// depends on IPV6_V6ONLY, whose default comes from the OS and its
// settings. Where it does, IPv4 peers appear as IPv4-mapped IPv6 addresses
// (::ffff:192.0.2.1): [net.TCPAddr.AddrPort] returns them so, and
// [netip.Addr.Is4], an IPv4 [netip.Prefix]'s Contains, and allowlists or
// rate limiters keyed by netip addresses do not take them for IPv4 (only
// net.IP's String and To4 hide the difference). Worse, on macOS and several BSDs an ephemeral
// [::]:0 bind may land on a port whose IPv4 side another process already
// holds; IPv4 clients of that port then silently reach the other process.
//
// [Listen] binds, in the default mode, an IPv4 socket and an IPv6 socket
// with IPV6_V6ONLY=1 on the same port, chosen so that no other socket holds
// either half, and returns one [Listener] that accepts from both:
//
//	ln, err := dualstack.Listen("tcp", ":0")        // instead of net.Listen
//	ln, err := dualstack.Listen("tcp", "localhost:0") // 127.0.0.1 and ::1, one port
//
// The binding is atomic: Listen returns a listener holding every socket it
// promised, or an error and nothing held.
//
// # Modes
//
// [Separate] (what [Auto] picks where the host has IPv6) gives each family
// its own socket. Peers keep their own family, so RemoteAddr is never
// IPv4-mapped, and no more specific IPv4 socket of another process can take
// IPv4 traffic from the listener. It costs a second socket; Accept waits
// on both in the caller's goroutine.
//
// [Single] binds one IPv6 socket with IPV6_V6ONLY cleared explicitly. It is
// one socket like net.Listen's, but IPv4 peers arrive IPv4-mapped, and not
// every OS can do it safely (see the BUG notes). Choose it where one socket
// matters more than family-native peers.
//
// A specific address (127.0.0.1, ::1, a host name's addresses) always gets a
// socket of its own family; the mode only decides how a wildcard is served.
//
// # Later programs
//
// On macOS, FreeBSD and OpenBSD a program that binds 127.0.0.1:P or
// [::1]:P after a wildcard listener on P, with SO_REUSEADDR as Go sets it,
// takes that address's traffic. There a Listener also holds guard
// sockets, which Addrs does not list: the loopback address of each family
// it serves on a wildcard, listening (what they accept is the listener's),
// and the wildcard of each family it serves on specific addresses only,
// bound. Linux refuses such binds itself.
//
// # UDP
//
// [ListenPacket] does the same for UDP and returns a [PacketConn].
//
// # Addresses
//
// [Unmap], [UnmapAddrPort], [AddrPortFrom] and [UnmapString] turn
// IPv4-mapped addresses from anywhere (other listeners, logs, proxies'
// headers) into their IPv4 form.
package dualstack

// BUG(dualstack): Single mode is an error on OpenBSD and DragonFly, whose
// kernels do not let IPV6_V6ONLY be cleared; on NetBSD, where another
// program's AF_INET socket can take a dual-stack socket's port and its IPv4
// clients (seen on NetBSD's network stack); and on illumos and Windows,
// where no safe way to bind a dual-stack socket has been verified.
// Auto never picks Single.

// BUG(dualstack): Windows is compiled for but untested. There each socket is
// bound and listening in one step (through net.ListenConfig, whose sockets
// the Windows poller needs), so the IPv4 socket listens before the IPv6
// one is bound; if that bind fails, a connection that arrived in between is
// reset.

// BUG(dualstack): On macOS, FreeBSD, OpenBSD and NetBSD a later program can bind
// another local address of the host (an interface's address, or an alias
// such as 127.0.0.2) on a listener's port with SO_REUSEADDR, and take that
// address's traffic: the listener's guard sockets hold only the loopback
// addresses and the wildcards. On illumos, DragonFly and Windows,
// what later binds can do next to a listener is unverified: whether the
// kernel refuses a bind of 127.0.0.1 or ::1 on the port with a reuse
// option next to a wildcard listener, and if not, who gets that address's
// traffic. Those systems get no guards.

// BUG(dualstack): On Windows, illumos and other systems without epoll or
// kqueue, Separate mode's Accept, and PacketConn's reads on several
// sockets, take connections and packets from a goroutine a socket. Under a
// tight loop the order between the families follows the Go scheduler; on
// Linux, macOS and the BSDs ready sockets are served strictly in turn. On
// macOS and the BSDs a blocked Accept or read holds a thread while it
// waits in kevent(2).
