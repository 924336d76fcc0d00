package dualstack_test

import (
	"bufio"
	"context"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/dualstack-go/dualstack"
)

// Listen on localhost:0, as tests do with net.Listen, but on 127.0.0.1 and
// ::1 at once, on one port that no other socket holds on either family.
func ExampleListen() {
	ln, err := dualstack.Listen("tcp", "localhost:0")
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			family := "IPv6"
			if c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Is4() {
				family = "IPv4"
			}
			fmt.Fprintf(c, "hello, %s client\n", family)
			c.Close()
		}
	}()

	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	for _, host := range []string{"127.0.0.1", "::1"} {
		c, err := net.Dial("tcp", net.JoinHostPort(host, port))
		if err != nil {
			log.Fatal(err)
		}
		line, _ := bufio.NewReader(c).ReadString('\n')
		c.Close()
		fmt.Print(line)
	}
	fmt.Println(ln.Mode(), "mode,", len(ln.Addrs()), "sockets on one port")
	// Output:
	// hello, IPv4 client
	// hello, IPv6 client
	// Separate mode, 2 sockets on one port
}

// A peer that reached an IPv6 socket over IPv4 shows IPv4-mapped; Unmap
// gives its IPv4 form.
func ExampleUnmap() {
	peer := &net.TCPAddr{IP: net.ParseIP("::ffff:192.0.2.1"), Port: 51000}
	fmt.Println(peer.AddrPort(), "Is4:", peer.AddrPort().Addr().Is4())

	fixed := dualstack.Unmap(peer).(*net.TCPAddr)
	fmt.Println(fixed.AddrPort(), "Is4:", fixed.AddrPort().Addr().Is4())
	// Output:
	// [::ffff:192.0.2.1]:51000 Is4: false
	// 192.0.2.1:51000 Is4: true
}

// A block list written in IPv4 does not match an IPv4-mapped peer, so the
// peer gets through; an allow list would refuse a client it should admit.
// AddrPortFrom normalizes the peer first.
func ExampleAddrPortFrom() {
	blocked := netip.MustParsePrefix("198.51.100.0/24")
	peer := &net.TCPAddr{IP: net.ParseIP("::ffff:198.51.100.7"), Port: 40000}

	fmt.Println("raw peer blocked:       ", blocked.Contains(peer.AddrPort().Addr()))
	ap, ok := dualstack.AddrPortFrom(peer)
	fmt.Println("normalized peer blocked:", ok && blocked.Contains(ap.Addr()))
	// Output:
	// raw peer blocked:        false
	// normalized peer blocked: true
}

// In Single mode one IPv6 socket takes IPv4 clients too; the connections
// Accept returns report them in IPv4 form, so log lines show 127.0.0.1,
// not ::ffff:127.0.0.1.
func ExampleListenConfig_single() {
	lc := dualstack.ListenConfig{Mode: dualstack.Single}
	ln, err := lc.Listen(context.Background(), "tcp", ":0")
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	logger := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{} // no time, for a stable output
			}
			return a
		},
	}))

	c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	conn, err := ln.Accept()
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	peer := conn.RemoteAddr().(*net.TCPAddr).AddrPort().Addr()
	logger.Info("accepted", "client", peer, "is4", peer.Is4())
	// Output:
	// level=INFO msg=accepted client=127.0.0.1 is4=true
}

// UnmapString normalizes one address as text, as found in logs or in an
// X-Forwarded-For header written by a proxy listening on a dual-stack
// socket; anything else passes through as it is.
func ExampleUnmapString() {
	for _, hop := range strings.Split("::ffff:203.0.113.9, [::ffff:192.0.2.1]:443, 2001:db8::7, unknown", ",") {
		fmt.Printf("%q\n", dualstack.UnmapString(strings.TrimSpace(hop)))
	}
	// Output:
	// "203.0.113.9"
	// "192.0.2.1:443"
	// "2001:db8::7"
	// "unknown"
}

// ListenPacket is Listen for UDP: one PacketConn on both families, one
// port. Sources come unmapped, and a reply leaves through the socket of
// the peer's family.
func ExampleListenPacket() {
	pc, err := dualstack.ListenPacket("udp", "localhost:0")
	if err != nil {
		log.Fatal(err)
	}
	defer pc.Close()
	go func() {
		buf := make([]byte, 512)
		for {
			n, src, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			reply := fmt.Sprintf("%s from an IPv4 peer: %v", buf[:n], src.Addr().Is4())
			pc.WriteToUDPAddrPort([]byte(reply), src)
		}
	}()

	port := strconv.Itoa(pc.LocalAddr().(*net.UDPAddr).Port)
	for _, host := range []string{"127.0.0.1", "::1"} {
		c, err := net.Dial("udp", net.JoinHostPort(host, port))
		if err != nil {
			log.Fatal(err)
		}
		fmt.Fprintf(c, "hello over %s", host)
		buf := make([]byte, 512)
		n, err := c.Read(buf)
		c.Close()
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(string(buf[:n]))
	}
	// Output:
	// hello over 127.0.0.1 from an IPv4 peer: true
	// hello over ::1 from an IPv4 peer: false
}

// UnmapAddrPort is Unmap for netip.AddrPort, without allocating: an
// IPv4-mapped address becomes IPv4, the port stays, and other addresses,
// zones included, pass unchanged.
func ExampleUnmapAddrPort() {
	for _, s := range []string{"[::ffff:192.0.2.1]:443", "[fe80::1%eth0]:22", "192.0.2.1:80"} {
		fmt.Println(dualstack.UnmapAddrPort(netip.MustParseAddrPort(s)))
	}
	// Output:
	// 192.0.2.1:443
	// [fe80::1%eth0]:22
	// 192.0.2.1:80
}

// In Single mode Accept returns a Conn for a connection on the dual-stack
// socket: its addresses are in IPv4 form for an IPv4 peer, and NetConn
// gives the kernel's *net.TCPConn for anything else (keep-alive, socket
// options, its own addresses, mapped as the socket reports them).
func ExampleConn() {
	lc := dualstack.ListenConfig{Mode: dualstack.Single}
	ln, err := lc.Listen(context.Background(), "tcp", ":0")
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	conn, err := ln.Accept()
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	if dc, ok := conn.(dualstack.Conn); ok {
		// The kernel's connection, for what Conn does not wrap.
		if err := dc.NetConn().(*net.TCPConn).SetKeepAlive(true); err != nil {
			log.Fatal(err)
		}
	}
	peer := conn.RemoteAddr().(*net.TCPAddr).AddrPort().Addr()
	fmt.Println("peer", peer, "is IPv4:", peer.Is4())
	// Output:
	// peer 127.0.0.1 is IPv4: true
}
