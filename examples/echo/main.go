// Command echo is a TCP echo server on both address families, the smallest
// server there is with dualstack.
//
// Usage:
//
//	go run ./examples/echo                 # echo on :7007
//	go run ./examples/echo -addr localhost:0
//	go run ./examples/echo -selftest       # echo on :0, send itself a line over each family, exit
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/dualstack-go/dualstack"
)

func main() {
	addr := flag.String("addr", ":7007", "address to listen on")
	selftest := flag.Bool("selftest", false, "listen on :0, send a line over 127.0.0.1 and ::1, and exit")
	flag.Parse()
	if *selftest {
		*addr = ":0"
	}
	ln, err := dualstack.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("echoing on %v", ln.Addrs())
	var conns sync.WaitGroup
	if *selftest {
		served := make(chan struct{})
		go func() {
			serve(ln, &conns)
			close(served)
		}()
		port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
		for _, host := range []string{"127.0.0.1", "::1"} {
			c, err := net.DialTimeout("tcp", net.JoinHostPort(host, port), 5*time.Second)
			if err != nil {
				log.Fatal(err)
			}
			c.SetDeadline(time.Now().Add(5 * time.Second))
			fmt.Fprintf(c, "hello over %s\n", host)
			line, err := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if err != nil {
				log.Fatal(err)
			}
			fmt.Print("echoed: ", line)
		}
		// Let the server finish, and log, every connection.
		ln.Close()
		<-served
		conns.Wait()
		return
	}
	serve(ln, &conns)
}

// serve echoes every connection until ln is closed.
func serve(ln net.Listener, conns *sync.WaitGroup) {
	for {
		c, err := ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			log.Fatal(err)
		}
		conns.Add(1)
		go func() {
			defer conns.Done()
			defer c.Close()
			n, _ := io.Copy(c, c)
			log.Printf("%v: echoed %d bytes", c.RemoteAddr(), n)
		}()
	}
}
