// Command bothfamilies listens on ":0" with dualstack.Listen and shows that
// clients of both address families reach it: it dials 127.0.0.1 and ::1,
// sends each connection a fresh token, and checks that this listener, and
// not another process on the same port, sends it back.
//
// It exits with status 1 if a family that the listener holds is not
// reached.
package main

import (
	"bufio"
	"crypto/rand"
	"fmt"
	"log"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/dualstack-go/dualstack"
)

func main() {
	log.SetFlags(0)
	ln, err := dualstack.Listen("tcp", ":0")
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	fmt.Printf("listening on %v in %v mode\n", ln.Addrs(), ln.Mode())

	secret := rand.Text()
	go serve(ln, secret)

	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	failed := false
	for _, host := range []string{"127.0.0.1", "::1"} {
		if host == "::1" && len(ln.Addrs()) == 1 && ln.Mode() != dualstack.Single {
			fmt.Printf("%-9s  skipped: this host has no IPv6, and the listener says so\n", host)
			continue
		}
		peer, err := exchange(net.JoinHostPort(host, port), secret)
		if err != nil {
			fmt.Printf("%-9s  FAILED: %v\n", host, err)
			failed = true
			continue
		}
		fmt.Printf("%-9s  reached this listener, which saw the client as %s\n", host, peer)
	}
	if failed {
		os.Exit(1)
	}
}

// serve answers each connection with the secret, the token it was sent and
// the client's address as the listener saw it.
func serve(ln net.Listener, secret string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			token, err := bufio.NewReader(c).ReadString('\n')
			if err != nil {
				return
			}
			fmt.Fprintf(c, "%s %s %s\n", secret, strings.TrimSpace(token), c.RemoteAddr())
		}()
	}
}

// exchange sends a token to address and returns the client address the
// server reports, if the answer carries the secret and the token.
func exchange(address, secret string) (string, error) {
	c, err := net.DialTimeout("tcp", address, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	token := rand.Text()
	fmt.Fprintf(c, "%s\n", token)
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", err
	}
	f := strings.Fields(line)
	if len(f) != 3 || f[0] != secret || f[1] != token {
		return "", fmt.Errorf("answered by something else: %q", line)
	}
	return f[2], nil
}
