package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"

	"github.com/dualstack-go/dualstack"
)

func listenCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("listen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	modeFlag := fs.String("mode", "auto", "how a wildcard is served: auto, separate or single")
	udp := fs.Bool("udp", false, "listen for UDP instead of TCP")
	count := fs.Int("count", 0, "exit after this many connections (TCP) or packets (UDP); 0 never")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: dualstack listen [-mode auto|separate|single] [-udp] [-count N] ADDR\n\n"+
			"Listens on ADDR (\":8080\", \"localhost:0\", \"[::1]:9000\", ...) on every socket it\n"+
			"calls for, prints each peer and the socket that took it, and echoes what\n"+
			"it receives.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "dualstack listen: want one address")
		fs.Usage()
		return 2
	}
	mode, ok := map[string]dualstack.Mode{
		"auto": dualstack.Auto, "separate": dualstack.Separate, "single": dualstack.Single,
	}[strings.ToLower(*modeFlag)]
	if !ok {
		fmt.Fprintf(stderr, "dualstack listen: unknown mode %q\n", *modeFlag)
		fs.Usage()
		return 2
	}
	if *count < 0 {
		fmt.Fprintln(stderr, "dualstack listen: -count must not be negative")
		fs.Usage()
		return 2
	}
	lc := dualstack.ListenConfig{Mode: mode}
	out := &lockedWriter{w: stdout}
	if *udp {
		return listenUDP(&lc, fs.Arg(0), *count, out, stderr)
	}
	return listenTCP(&lc, fs.Arg(0), *count, out, stderr)
}

// lockedWriter serializes the lines of several goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) printf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.w, format, args...)
}

func listenTCP(lc *dualstack.ListenConfig, address string, count int, out *lockedWriter, stderr io.Writer) int {
	ln, err := lc.Listen(context.Background(), "tcp", address)
	if err != nil {
		fmt.Fprintln(stderr, "dualstack listen:", err)
		return 1
	}
	defer ln.Close()
	out.printf("listening on %s (%v mode)\n", joinAddrs(ln.Addrs()), ln.Mode())
	var wg sync.WaitGroup
	var bo backoff
	for n := 0; count == 0 || n < count; n++ {
		c, err := ln.Accept()
		if err != nil {
			fmt.Fprintln(stderr, "dualstack listen:", err)
			if bo.retry(err) {
				n--
				continue
			}
			return 1
		}
		bo.ok()
		peer := c.RemoteAddr().(*net.TCPAddr).AddrPort()
		local := c.LocalAddr().(*net.TCPAddr).AddrPort()
		out.printf("connection from %s on %s\n", peer, socketOf(ln.Addrs(), ln.Mode(), local.Addr()))
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			n, err := io.Copy(c, c)
			if err != nil {
				out.printf("closed %s after echoing %d bytes: %v\n", peer, n, err)
				return
			}
			out.printf("closed %s after echoing %d bytes\n", peer, n)
		}()
	}
	wg.Wait()
	return 0
}

func listenUDP(lc *dualstack.ListenConfig, address string, count int, out *lockedWriter, stderr io.Writer) int {
	pc, err := lc.ListenPacket(context.Background(), "udp", address)
	if err != nil {
		fmt.Fprintln(stderr, "dualstack listen:", err)
		return 1
	}
	defer pc.Close()
	out.printf("listening on %s (%v mode, UDP)\n", joinAddrs(pc.Addrs()), pc.Mode())
	buf := make([]byte, 65535)
	for n := 0; count == 0 || n < count; n++ {
		size, src, err := pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			fmt.Fprintln(stderr, "dualstack listen:", err)
			return 1
		}
		out.printf("packet of %d bytes from %s on %s\n", size, src, socketOf(pc.Addrs(), pc.Mode(), src.Addr()))
		if _, err := pc.WriteToUDPAddrPort(buf[:size], src); err != nil {
			fmt.Fprintln(stderr, "dualstack listen:", err)
		}
	}
	return 0
}

// socketOf names the socket of addrs that serves a, an address of this host
// (TCP) or of a peer (UDP): the dual-stack one in Single mode, else the
// one of a's family, its own address first.
func socketOf(addrs []net.Addr, mode dualstack.Mode, a netip.Addr) string {
	if mode == dualstack.Single {
		return addrs[0].String() + " (dual-stack)"
	}
	a = a.Unmap()
	fallback := ""
	for _, s := range addrs {
		ap, ok := dualstack.AddrPortFrom(s)
		if !ok || ap.Addr().Is4() != a.Is4() {
			continue
		}
		if ap.Addr() == a {
			return s.String()
		}
		if fallback == "" {
			fallback = s.String()
		}
	}
	return fallback
}

func joinAddrs(addrs []net.Addr) string {
	s := make([]string, len(addrs))
	for i, a := range addrs {
		s[i] = a.String()
	}
	return strings.Join(s, " ")
}
