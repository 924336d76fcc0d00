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
	"syscall"
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
	State    string `json:"state"`            // "present", "disabled" (no ::1), "absent" (no AF_INET6 sockets) or "unknown" (the check failed)
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
	// IPv4Error and IPv6Error say why a family was not checked.
	IPv4Error string `json:"ipv4_error,omitempty"`
	IPv6Error string `json:"ipv6_error,omitempty"`
	Error     string `json:"error,omitempty"`
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
		fmt.Fprintf(fs.Output(), "usage: dualstack [doctor] [-json] [-held N] [-binds N]\n"+
			"       dualstack listen [-mode auto|separate|single] [-udp] [-count N] ADDR\n\n"+
			"doctor, the default, reports how this host listens on IPv4 and IPv6. It\n"+
			"exits 0 when the report is complete, 1 when a check could not run.\n"+
			"listen accepts on both families like nc -l (\"dualstack listen -h\").\n\n"+
			"doctor's flags:\n")
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
	ln, err := net.Listen("tcp6", "[::1]:0")
	if err == nil {
		r.IPv6.Loopback = true
		ln.Close()
	}
	switch {
	case !r.IPv6.Sockets:
		r.IPv6.State = "absent"
	case r.IPv6.Loopback:
		r.IPv6.State = "present"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		r.IPv6.State = "disabled" // no interface has ::1
	default:
		// Out of ports or descriptors, say: that says nothing of IPv6.
		r.IPv6.State = "unknown"
		fail("IPv6 loopback", err)
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

	var merr error
	if r.Mapped, merr = mappedCheck(); merr != nil {
		fail("IPv4-mapped sockets", merr)
	}
	v6 := r.IPv6.State == "present"

	for _, c := range []struct {
		call   string
		listen func() (net.Listener, error)
	}{
		{`net.Listen("tcp", ":0")`, func() (net.Listener, error) { return net.Listen("tcp", ":0") }},
		{`net.Listen("tcp", "localhost:0")`, func() (net.Listener, error) { return net.Listen("tcp", "localhost:0") }},
		{`dualstack.Listen("tcp", ":0")`, func() (net.Listener, error) { return dualstack.Listen("tcp", ":0") }},
		{`dualstack.Listen("tcp", "localhost:0")`, func() (net.Listener, error) { return dualstack.Listen("tcp", "localhost:0") }},
	} {
		res, errs := listenCheck(c.call, c.listen, v6)
		if res.Error != "" {
			fail(c.call, errors.New(res.Error))
		}
		for _, err := range errs {
			fail(c.call, err)
		}
		r.Listeners = append(r.Listeners, res)
	}

	if held > 0 && binds > 0 {
		sc, err := shadowingCheck(held, binds)
		if err != nil {
			fail("shadowing", err)
		}
		for _, s := range sc.Strategies {
			if s.Error != "" {
				fail("shadowing, "+s.Strategy, errors.New(s.Error))
			}
		}
		r.Shadowing = sc
	}
	return r
}

// mappedCheck listens on one dual-stack socket and sees how an IPv4 client
// shows there. It returns an error when the check could not run: no port
// or descriptor to listen or dial with.
func mappedCheck() (MappedState, error) {
	lc := dualstack.ListenConfig{Mode: dualstack.Single}
	ln, err := lc.Listen(context.Background(), "tcp", ":0")
	switch {
	case errors.Is(err, errors.ErrUnsupported):
		return MappedState{Detail: err.Error()}, nil
	case err != nil:
		return MappedState{Detail: "not checked"}, fmt.Errorf("listening: %w", err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	c, err := net.DialTimeout("tcp4", fmt.Sprintf("127.0.0.1:%d", port), 2*time.Second)
	if err != nil {
		if !unreachable(err, true) {
			return MappedState{Detail: "not checked"}, fmt.Errorf("dialing 127.0.0.1: %w", err)
		}
		return MappedState{Detail: "an IPv4 client cannot connect: " + err.Error()}, nil
	}
	defer c.Close()
	ln.SetDeadline(time.Now().Add(2 * time.Second))
	s, err := ln.Accept()
	if err != nil {
		return MappedState{Detail: "no IPv4 connection arrived: " + err.Error()}, nil
	}
	defer s.Close()
	raw := s.(dualstack.Conn).NetConn().RemoteAddr().(*net.TCPAddr).AddrPort().Addr()
	return MappedState{Works: true, SeenAs: raw.String()}, nil
}

// unreachable reports whether a dial error says that the address does not
// reach a listener (refused, timed out, no route, or an IPv6 address on a
// host whose IPv6 is off, v6 false), rather than that the dial could not
// be made: no free source port (EADDRNOTAVAIL where the address exists),
// no descriptor.
func unreachable(err error, familyUp bool) bool {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.EHOSTUNREACH),
		errors.As(err, &ne) && ne.Timeout():
		return true
	case errors.Is(err, syscall.EADDRNOTAVAIL), errors.Is(err, syscall.EAFNOSUPPORT):
		return !familyUp
	}
	return false
}

// listenCheck listens, and dials 127.0.0.1 and ::1 on the port: a token
// exchange shows whether each reaches this listener, and how it sees the
// client.
//
// The errors are those of dials that could not be made: the check did not
// run for that family.
func listenCheck(call string, listen func() (net.Listener, error), v6 bool) (ListenResult, []error) {
	res := ListenResult{Call: call}
	ln, err := listen()
	if err != nil {
		res.Error = err.Error()
		return res, nil
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
	var errs []error
	var err4, err6 error
	res.IPv4Seen, res.IPv4, err4 = exchange("127.0.0.1", port, srv.secret, true)
	res.IPv6Seen, res.IPv6, err6 = exchange("::1", port, srv.secret, v6)
	if err4 != nil {
		res.IPv4Error = err4.Error()
		errs = append(errs, err4)
	}
	if err6 != nil {
		res.IPv6Error = err6.Error()
		errs = append(errs, err6)
	}
	return res, errs
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
		var bo backoff
		for {
			c, err := ln.Accept()
			if err != nil {
				if bo.retry(err) {
					continue
				}
				return
			}
			bo.ok()
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
// whether the answer carried the secret; or an error if the dial could
// not be made (see unreachable; familyUp says whether host's family is up
// on this host).
func exchange(host string, port int, secret string, familyUp bool) (string, bool, error) {
	answer, err := dialAnswer(host, port)
	if err != nil {
		if !unreachable(err, familyUp) {
			return "", false, fmt.Errorf("dialing %s: %w", host, err)
		}
		return "", false, nil
	}
	f := strings.Fields(answer)
	if len(f) != 2 || f[0] != secret {
		return "", false, nil
	}
	return f[1], true, nil
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
		"unknown":  "unknown: binding ::1 failed for another reason (below)",
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
	} else if r.Mapped.Detail == "not checked" {
		fmt.Fprintf(w, "IPv4-mapped sockets  not checked: the check could not run (below)\n")
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
			err  string
		}{{"127.0.0.1", l.IPv4, l.IPv4Seen, l.IPv4Error}, {"::1", l.IPv6, l.IPv6Seen, l.IPv6Error}} {
			if f.err != "" {
				fmt.Fprintf(w, "  %-40s   %-9s not checked: %s\n", "", f.host, f.err)
			} else if f.ok {
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
