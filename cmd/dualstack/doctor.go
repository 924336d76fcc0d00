package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"time"

	"github.com/dualstack-go/dualstack"
)

// Report is what doctor finds; -json prints it as it is.
type Report struct {
	OS        string          `json:"os"`
	Arch      string          `json:"arch"`
	Kernel    string          `json:"kernel,omitempty"`
	IPv6      IPv6State       `json:"ipv6"`
	V6Only    V6Only          `json:"v6only_default"`
	Ports     *PortRange      `json:"ephemeral_ports,omitempty"`
	Mapped    MappedState     `json:"ipv4_mapped"`
	Listeners []ListenResult  `json:"listeners"`
	Shadowing *ShadowingCheck `json:"shadowing,omitempty"`
	// Errors lists the checks that could not run.
	Errors []string `json:"errors,omitempty"`
}

// IPv6State says whether the host can serve IPv6.
type IPv6State struct {
	State    string `json:"state"`            // "present", "disabled" (no ::1) or "absent" (no AF_INET6 sockets)
	Sockets  bool   `json:"sockets"`          // AF_INET6 sockets can be made
	Loopback bool   `json:"loopback"`         // ::1 can be bound
	Sysctl   string `json:"sysctl,omitempty"` // e.g. "net.ipv6.conf.all.disable_ipv6 = 0"
}

// V6Only is the IPV6_V6ONLY a new AF_INET6 socket gets.
type V6Only struct {
	Default bool   `json:"default"`
	Source  string `json:"source"` // the setting it comes from
}

// PortRange is the range ephemeral ports come from.
type PortRange struct {
	First  int    `json:"first"`
	Last   int    `json:"last"`
	Source string `json:"source"`
}

// MappedState says whether an AF_INET6 socket takes IPv4 clients.
type MappedState struct {
	Works  bool   `json:"works"`
	SeenAs string `json:"ipv4_client_seen_as,omitempty"` // the client's address as that socket reports it
	Detail string `json:"detail,omitempty"`
}

// ListenResult is what one call binds and who reaches it.
type ListenResult struct {
	Call     string   `json:"call"`
	Addrs    []string `json:"addrs,omitempty"`
	Mode     string   `json:"mode,omitempty"`
	IPv4     bool     `json:"ipv4_reaches"`
	IPv4Seen string   `json:"ipv4_client_seen_as,omitempty"`
	IPv6     bool     `json:"ipv6_reaches"`
	IPv6Seen string   `json:"ipv6_client_seen_as,omitempty"`
	Error    string   `json:"error,omitempty"`
}

// ShadowingCheck is the live run of the failure: IPv4 ports held by other
// sockets, and how often each way of binding lands on one, so that its
// IPv4 clients reach the other socket.
type ShadowingCheck struct {
	Held       int            `json:"held_ipv4_ports"`
	Strategies []ShadowResult `json:"strategies"`
}

// ShadowResult is one way of binding port 0, tried Binds times.
type ShadowResult struct {
	Strategy   string `json:"strategy"`
	Binds      int    `json:"binds"`
	OnHeldPort int    `json:"on_held_port"`
	Shadowed   int    `json:"shadowed"` // an IPv4 client reached the holder
	Error      string `json:"error,omitempty"`
}

func doctorCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("doctor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print the report as JSON")
	held := fs.Int("held", 256, "IPv4 ports to hold for the shadowing check (0 skips it)")
	binds := fs.Int("binds", 64, "binds of each kind in the shadowing check")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: dualstack [doctor] [-json] [-held N] [-binds N]\n\n"+
			"Reports how this host listens on IPv4 and IPv6. Exits 0 when the report\n"+
			"is complete, 1 when a check could not run.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "dualstack doctor: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return 2
	}
	r := doctor(*held, *binds)
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(r)
	} else {
		r.print(stdout)
	}
	if len(r.Errors) > 0 {
		return 1
	}
	return 0
}

// doctor runs every check. Every socket it opens is opened on the calling
// goroutine, so that it runs in that goroutine's network namespace.
func doctor(held, binds int) *Report {
	r := &Report{OS: runtime.GOOS, Arch: runtime.GOARCH, Kernel: kernelRelease()}
	fail := func(check string, err error) {
		r.Errors = append(r.Errors, check+": "+err.Error())
	}

	r.IPv6.Sockets = ipv6Sockets()
	if ln, err := net.Listen("tcp6", "[::1]:0"); err == nil {
		r.IPv6.Loopback = true
		ln.Close()
	}
	switch {
	case !r.IPv6.Sockets:
		r.IPv6.State = "absent"
	case !r.IPv6.Loopback:
		r.IPv6.State = "disabled"
	default:
		r.IPv6.State = "present"
	}
	r.IPv6.Sysctl = ipv6Sysctl()

	if r.IPv6.Sockets {
		on, err := v6onlyDefault()
		if err != nil {
			fail("IPV6_V6ONLY default", err)
		}
		r.V6Only = V6Only{Default: on, Source: v6onlySource()}
	}
	if first, last, source, ok := portRange(); ok {
		r.Ports = &PortRange{First: first, Last: last, Source: source}
	}

	r.Mapped = mappedCheck()

	for _, c := range []struct {
		call   string
		listen func() (net.Listener, error)
	}{
		{`net.Listen("tcp", ":0")`, func() (net.Listener, error) { return net.Listen("tcp", ":0") }},
		{`net.Listen("tcp", "localhost:0")`, func() (net.Listener, error) { return net.Listen("tcp", "localhost:0") }},
		{`dualstack.Listen("tcp", ":0")`, func() (net.Listener, error) { return dualstack.Listen("tcp", ":0") }},
		{`dualstack.Listen("tcp", "localhost:0")`, func() (net.Listener, error) { return dualstack.Listen("tcp", "localhost:0") }},
	} {
		res := listenCheck(c.call, c.listen)
		if res.Error != "" {
			fail(c.call, errors.New(res.Error))
		}
		r.Listeners = append(r.Listeners, res)
	}

	if held > 0 && binds > 0 {
		sc, err := shadowingCheck(held, binds)
		if err != nil {
			fail("shadowing", err)
		}
		r.Shadowing = sc
	}
	return r
}

// mappedCheck listens on one dual-stack socket and sees how an IPv4 client
// shows there.
func mappedCheck() MappedState {
	lc := dualstack.ListenConfig{Mode: dualstack.Single}
	ln, err := lc.Listen(context.Background(), "tcp", ":0")
	if err != nil {
		return MappedState{Detail: err.Error()}
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	c, err := net.DialTimeout("tcp4", fmt.Sprintf("127.0.0.1:%d", port), 2*time.Second)
	if err != nil {
		return MappedState{Detail: "an IPv4 client cannot connect: " + err.Error()}
	}
	defer c.Close()
	ln.SetDeadline(time.Now().Add(2 * time.Second))
	s, err := ln.Accept()
	if err != nil {
		return MappedState{Detail: "no IPv4 connection arrived: " + err.Error()}
	}
	defer s.Close()
	raw := s.(dualstack.Conn).NetConn().RemoteAddr().(*net.TCPAddr).AddrPort().Addr()
	return MappedState{Works: true, SeenAs: raw.String()}
}

// listenCheck listens, and dials 127.0.0.1 and ::1 on the port: a token
// exchange shows whether each reaches this listener, and how it sees the
// client.
func listenCheck(call string, listen func() (net.Listener, error)) ListenResult {
	res := ListenResult{Call: call}
	ln, err := listen()
	if err != nil {
		res.Error = err.Error()
		return res
	}
	defer ln.Close()
	if dl, ok := ln.(*dualstack.Listener); ok {
		for _, a := range dl.Addrs() {
			res.Addrs = append(res.Addrs, a.String())
		}
		res.Mode = dl.Mode().String()
	} else {
		res.Addrs = []string{addrPort(ln.Addr()).String()}
	}
	srv := serveToken(ln, "this")
	defer srv.stop()
	port := ln.Addr().(*net.TCPAddr).Port
	res.IPv4Seen, res.IPv4 = exchange("127.0.0.1", port, srv.secret)
	res.IPv6Seen, res.IPv6 = exchange("::1", port, srv.secret)
	return res
}

// addrPort is the address as netip prints it: an IPv4-mapped address shows
// as such, where net.TCPAddr.String would hide it.
func addrPort(a net.Addr) netip.AddrPort {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.AddrPort()
	}
	return netip.AddrPort{}
}

// tokenServer answers each connection with its secret and the client's
// address as its socket reports it.
type tokenServer struct {
	secret string
	ln     net.Listener
	done   chan struct{}
}

func serveToken(ln net.Listener, name string) *tokenServer {
	s := &tokenServer{secret: name + "-" + rand.Text(), ln: ln, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for {
			c, err := ln.Accept()
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && !errors.Is(err, net.ErrClosed) && !ne.Timeout() {
					continue
				}
				return
			}
			remote := c.RemoteAddr()
			if dc, ok := c.(dualstack.Conn); ok {
				remote = dc.NetConn().RemoteAddr() // the socket's own view
			}
			c.SetDeadline(time.Now().Add(2 * time.Second))
			fmt.Fprintf(c, "%s %s\n", s.secret, addrPort(remote))
			c.Close()
		}
	}()
	return s
}

func (s *tokenServer) stop() {
	s.ln.Close()
	<-s.done
}

// exchange dials host:port and returns how the server saw the client, and
// whether the answer carried the secret.
func exchange(host string, port int, secret string) (string, bool) {
	answer, err := dialAnswer(host, port)
	if err != nil {
		return "", false
	}
	f := strings.Fields(answer)
	if len(f) != 2 || f[0] != secret {
		return "", false
	}
	return f[1], true
}

// dialAnswer dials host:port and reads the first line of the answer.
func dialAnswer(host string, port int) (string, error) {
	c, err := net.DialTimeout("tcp", net.JoinHostPort(host, fmt.Sprint(port)), 2*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	return bufio.NewReader(c).ReadString('\n')
}

// shadowingCheck holds IPv4 ports with listeners that answer "holder",
// then binds port 0 the way naive programs do, and with dualstack.Listen,
// and dials 127.0.0.1 on each port it got: an answer from a holder is a
// shadowed listener.
func shadowingCheck(held, binds int) (*ShadowingCheck, error) {
	sc := &ShadowingCheck{}
	heldPorts := map[int]bool{}
	var holders []*tokenServer
	defer func() {
		for _, h := range holders {
			h.stop()
		}
	}()
	for i := range held {
		addr := "127.0.0.1:0"
		if i%2 == 1 {
			addr = "0.0.0.0:0"
		}
		ln, err := net.Listen("tcp4", addr)
		if err != nil {
			return sc, fmt.Errorf("holding IPv4 ports: %w", err)
		}
		heldPorts[ln.Addr().(*net.TCPAddr).Port] = true
		holders = append(holders, serveToken(ln, "holder"))
	}
	sc.Held = len(heldPorts)

	for _, s := range []struct {
		name   string
		listen func() (net.Listener, error)
	}{
		{`net.Listen("tcp", ":0"), one dual-stack socket`, func() (net.Listener, error) { return net.Listen("tcp", ":0") }},
		{`net.Listen("tcp6", "[::]:0"), an IPv6-only socket`, func() (net.Listener, error) { return net.Listen("tcp6", "[::]:0") }},
		{`dualstack.Listen("tcp", ":0")`, func() (net.Listener, error) { return dualstack.Listen("tcp", ":0") }},
	} {
		res := ShadowResult{Strategy: s.name}
		for range binds {
			ln, err := s.listen()
			if err != nil {
				res.Error = err.Error()
				break
			}
			res.Binds++
			port := ln.Addr().(*net.TCPAddr).Port
			if heldPorts[port] {
				res.OnHeldPort++
				if answer, err := dialAnswer("127.0.0.1", port); err == nil && strings.HasPrefix(answer, "holder-") {
					res.Shadowed++
				}
			}
			ln.Close()
		}
		sc.Strategies = append(sc.Strategies, res)
	}
	return sc, nil
}

func (r *Report) print(w io.Writer) {
	kernel := ""
	if r.Kernel != "" {
		kernel = ", kernel " + r.Kernel
	}
	fmt.Fprintf(w, "dualstack doctor: %s/%s%s\n\n", r.OS, r.Arch, kernel)

	ipv6 := map[string]string{
		"present":  "present: AF_INET6 sockets work and ::1 is assigned",
		"disabled": "disabled: AF_INET6 sockets work, but ::1 cannot be bound",
		"absent":   "absent: AF_INET6 sockets cannot be made",
	}[r.IPv6.State]
	if r.IPv6.Sysctl != "" {
		ipv6 += " (" + r.IPv6.Sysctl + ")"
	}
	fmt.Fprintf(w, "IPv6                 %s\n", ipv6)
	if r.IPv6.Sockets {
		what := "off: a [::] socket takes IPv4 clients unless told otherwise"
		if r.V6Only.Default {
			what = "on: a [::] socket takes IPv6 clients only unless told otherwise"
		}
		fmt.Fprintf(w, "IPV6_V6ONLY default  %s (%s)\n", what, r.V6Only.Source)
	}
	if r.Ports != nil {
		fmt.Fprintf(w, "Ephemeral ports      %d-%d (%s)\n", r.Ports.First, r.Ports.Last, r.Ports.Source)
	}
	if r.Mapped.Works {
		fmt.Fprintf(w, "IPv4-mapped sockets  work: an IPv4 client of a dual-stack socket shows as %s\n", r.Mapped.SeenAs)
	} else {
		fmt.Fprintf(w, "IPv4-mapped sockets  do not work here: %s\n", r.Mapped.Detail)
	}

	fmt.Fprintf(w, "\nWhat listening binds on this host, and who reaches it (token exchange):\n")
	for _, l := range r.Listeners {
		if l.Error != "" {
			fmt.Fprintf(w, "  %-40s error: %s\n", l.Call, l.Error)
			continue
		}
		mode := ""
		if l.Mode != "" {
			mode = " (" + l.Mode + ")"
		}
		fmt.Fprintf(w, "  %-40s binds %s%s\n", l.Call, strings.Join(l.Addrs, " "), mode)
		for _, f := range []struct {
			host string
			ok   bool
			seen string
		}{{"127.0.0.1", l.IPv4, l.IPv4Seen}, {"::1", l.IPv6, l.IPv6Seen}} {
			if f.ok {
				fmt.Fprintf(w, "  %-40s   %-9s reaches it, seen as %s\n", "", f.host, f.seen)
			} else {
				fmt.Fprintf(w, "  %-40s   %-9s does not reach it\n", "", f.host)
			}
		}
	}

	if sc := r.Shadowing; sc != nil {
		fmt.Fprintf(w, "\nShadowing: %d IPv4 ports held by other sockets; port 0 bound repeatedly, then\n"+
			"127.0.0.1 dialed on each port that is held:\n", sc.Held)
		for _, s := range sc.Strategies {
			if s.Error != "" {
				fmt.Fprintf(w, "  %-52s error: %s\n", s.Strategy, s.Error)
				continue
			}
			verdict := "never shadowed"
			switch {
			case s.Shadowed == 1:
				verdict = "SHADOWED once: its IPv4 clients reached another socket"
			case s.Shadowed > 1:
				verdict = fmt.Sprintf("SHADOWED %d times: its IPv4 clients reached another socket", s.Shadowed)
			}
			fmt.Fprintf(w, "  %-52s %d of %d on a held port; %s\n", s.Strategy, s.OnHeldPort, s.Binds, verdict)
		}
	}
	if len(r.Errors) > 0 {
		fmt.Fprintf(w, "\nChecks that could not run:\n")
		for _, e := range r.Errors {
			fmt.Fprintf(w, "  %s\n", e)
		}
	}
}
