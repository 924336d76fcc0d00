// Command socketactivation serves on listening sockets handed to it as
// systemd's socket activation hands them (LISTEN_FDS, descriptors from 3
// on), or, started by hand, on a listener of its own. A unit like
//
//	[Socket]
//	ListenStream=0.0.0.0:8080
//	ListenStream=[::]:8080
//	BindIPv6Only=ipv6-only
//
// gives it an IPv4 and an IPv6-only socket on one port: what
// dualstack.Listen("tcp", ":8080") would hold in Separate mode.
// Each client gets one line back: the server's process id and the
// client's address, unmapped.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"strconv"

	"github.com/dualstack-go/dualstack"
)

func main() {
	addr := flag.String("addr", ":8080", "address to listen on when no sockets are handed over")
	conns := flag.Int("conns", 0, "exit after serving this many connections (0: never)")
	flag.Parse()

	ln, err := activated()
	if err != nil {
		log.Fatal(err)
	}
	if ln == nil {
		if ln, err = dualstack.Listen("tcp", *addr); err != nil {
			log.Fatal(err)
		}
	}
	defer ln.Close()
	log.Printf("serving on %v (%v)", ln.Addrs(), ln.Mode())
	for n := 0; *conns == 0 || n < *conns; n++ {
		c, err := ln.Accept()
		if err != nil {
			log.Fatal(err)
		}
		serve(c)
	}
}

// activated returns a listener on the sockets systemd handed over, or nil
// if there are none for this process.
func activated() (*dualstack.Listener, error) {
	n, _ := strconv.Atoi(os.Getenv("LISTEN_FDS"))
	if pid := os.Getenv("LISTEN_PID"); n <= 0 || pid != "" && pid != strconv.Itoa(os.Getpid()) {
		return nil, nil
	}
	for _, v := range []string{"LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"} {
		os.Unsetenv(v) // not for our children
	}
	var files []*os.File
	for fd := 3; fd < 3+n; fd++ {
		files = append(files, os.NewFile(uintptr(fd), "LISTEN_FD_"+strconv.Itoa(fd)))
	}
	ln, err := dualstack.FileListener(files...)
	for _, f := range files {
		f.Close() // the listener holds duplicates
	}
	return ln, err
}

func serve(c net.Conn) {
	defer c.Close()
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return
	}
	fmt.Fprintf(c, "pid %d: %s from %v\n", os.Getpid(), line[:len(line)-1], c.RemoteAddr())
}
