package dualstack_test

import (
	"bufio"
	"fmt"
	"log"
	"net"
	"strconv"

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
