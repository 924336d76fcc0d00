package dualstack

import (
	"errors"
	"fmt"
	"net/netip"
	"syscall"
)

// This file holds the binding algorithms. They are portable: they see the
// OS only through a socketAPI and an osFacts, so tests run every OS's
// variant against models of those kernels.

// endpoint is one socket that a listener is to hold.
type endpoint struct {
	addr netip.Addr // IPv4 in its 4-byte form; IPv6 may carry a zone
	dual bool       // the IPv6 wildcard with IPV6_V6ONLY cleared: Single mode
}

func (e endpoint) family() family {
	if e.addr.Is4() {
		return inet4
	}
	return inet6
}

// role names the socket in error messages.
func (e endpoint) role() string {
	if e.dual {
		return "dual-stack socket"
	}
	return e.family().String() + " socket"
}

// plan is what one Listen or ListenPacket call binds: every endpoint, on
// one port.
type plan struct {
	proto proto
	port  uint16     // 0: one port chosen for all endpoints
	eps   []endpoint // IPv4 first
	// fallback4 reports whether the IPv6 endpoints are dropped where the
	// host cannot serve IPv6 (Auto mode).
	fallback4 bool
}

func (p plan) has(f family) bool {
	for _, ep := range p.eps {
		if ep.family() == f {
			return true
		}
	}
	return false
}

// only4 returns the plan without its IPv6 endpoints, and whether that
// leaves anything to bind.
func (p plan) only4() (plan, bool) {
	var eps []endpoint
	for _, ep := range p.eps {
		if ep.family() == inet4 {
			eps = append(eps, ep)
		}
	}
	p.eps, p.fallback4 = eps, false
	return p, len(eps) > 0
}

// mode returns the mode that a listener bound from the plan is in.
func (p plan) mode() Mode {
	if len(p.eps) == 1 && p.eps[0].dual {
		return Single
	}
	return Separate
}

// binder runs the binding algorithms.
type binder struct {
	api      socketAPI
	os       osFacts
	control  func(network, address string, c syscall.RawConn) error
	attempts int
}

// bound is a plan carried out: one socket an endpoint, all on port.
type bound struct {
	socks []socket
	eps   []endpoint
	port  uint16
}

func (r bound) close() {
	for _, s := range r.socks {
		s.close()
	}
}

// bindError is the failure of one socket of a plan.
type bindError struct {
	role     string         // which socket: "IPv6 socket", "IPv4 port probe", ...
	fam      family         // its family
	addr     netip.AddrPort // the address it was being bound to
	attempts int            // ephemeral attempts made, once they ran out
	hint     string         // what the caller can do, if anything
	err      error
}

func (e *bindError) Error() string {
	msg := e.role + ": " + e.err.Error()
	if e.attempts > 0 {
		msg += fmt.Sprintf(" (gave up after %d attempts)", e.attempts)
	}
	if e.hint != "" {
		msg += " (" + e.hint + ")"
	}
	return msg
}

func (e *bindError) Unwrap() error { return e.err }

// lacksIPv6 reports whether err says that the host cannot serve IPv6 at the
// address an IPv6 socket was being bound to.
func lacksIPv6(err error) bool {
	var be *bindError
	return errors.As(err, &be) && be.fam == inet6 && noIPv6(be.err)
}

// bind carries out p: every endpoint bound on one port and listening, or
// an error and nothing left open.
func (b *binder) bind(p plan) (bound, error) {
	r, err := b.retry(p)
	if err != nil && p.fallback4 && lacksIPv6(err) {
		if p4, ok := p.only4(); ok {
			return b.retry(p4)
		}
	}
	if err != nil && lacksIPv6(err) && p.has(inet4) {
		var be *bindError
		if errors.As(err, &be) {
			be.hint = "this host cannot serve IPv6 there; Auto mode would listen on IPv4 alone"
		}
	}
	return r, err
}

// retry runs one attempt after another while an ephemeral bind finds its
// port taken, up to b.attempts.
func (b *binder) retry(p plan) (bound, error) {
	try := b.listenSeparate
	if p.mode() == Single {
		try = b.listenSingle
	}
	for n := 1; ; n++ {
		r, err := try(p)
		if err == nil || p.port != 0 || !b.portTaken(err) {
			return r, err
		}
		if n >= b.attempts {
			var be *bindError
			if errors.As(err, &be) {
				be.attempts = n
			}
			return r, err
		}
	}
}

// portTaken reports whether err says that another socket holds the port.
func (b *binder) portTaken(err error) bool {
	return addrInUse(err) || b.os.deniedIsTaken && accessDenied(err)
}

// listenSeparate binds one socket an endpoint, each of its own family, on
// one port. With an ephemeral port the first bind picks the port: on Linux
// a dual-stack probe, whose port search skips ports held by either family;
// elsewhere the first endpoint, IPv4 where there is one, because the IPv6
// port search of those kernels ignores AF_INET sockets. The other binds
// then fail if their half of the port is taken, and the caller retries.
func (b *binder) listenSeparate(p plan) (r bound, err error) {
	r = bound{eps: p.eps, port: p.port}
	defer func() {
		if err != nil {
			r.close()
			r = bound{}
		}
	}()
	eps := p.eps
	if r.port == 0 {
		if b.os.dualProbe && p.has(inet4) && p.has(inet6) {
			probe, port, err := b.bindProbe(p, inet6)
			if err != nil {
				return r, err
			}
			probe.close()
			r.port = port
		} else {
			s, port, err := b.bindEndpoint(p, eps[0], 0)
			if err != nil {
				return r, err
			}
			r.socks = append(r.socks, s)
			r.port = port
			eps = eps[1:]
		}
	}
	for _, ep := range eps {
		s, _, err := b.bindEndpoint(p, ep, r.port)
		if err != nil {
			return r, err
		}
		r.socks = append(r.socks, s)
	}
	return r, b.listenAll(r)
}

// listenSingle binds Single mode's one dual-stack socket, the way the OS
// allows it to be done safely.
func (b *binder) listenSingle(p plan) (r bound, err error) {
	ep := p.eps[0]
	var s socket
	switch b.os.single {
	case singleDirect:
		s, r.port, err = b.bindEndpoint(p, ep, p.port)
	case singleHeldProbe:
		// While the probe holds the IPv4 side of the port, no other
		// AF_INET socket can bind it and take IPv4 traffic from ours.
		probe, port, perr := b.bindProbe(p, inet4)
		if perr != nil {
			return bound{}, perr
		}
		s, r.port, err = b.bindEndpoint(p, ep, port)
		probe.close()
	default:
		return bound{}, fmt.Errorf("dualstack: Single mode is not supported on %s: %s: %w",
			b.os.goos, b.os.singleWhy, errors.ErrUnsupported)
	}
	if err != nil {
		return bound{}, err
	}
	r.socks, r.eps = []socket{s}, p.eps
	if err := b.listenAll(r); err != nil {
		s.close()
		return bound{}, err
	}
	return r, nil
}

// listenAll starts listening on every socket, once all are bound. It
// closes nothing: its callers do on error.
func (b *binder) listenAll(r bound) error {
	for i, s := range r.socks {
		if err := s.listen(); err != nil {
			ep := r.eps[i]
			return &bindError{role: ep.role(), fam: ep.family(), addr: netip.AddrPortFrom(ep.addr, r.port), err: err}
		}
	}
	return nil
}

// reuseAddr reports whether the sockets of p get SO_REUSEADDR: on explicit
// TCP ports, where the OS is one whose listeners Go gives it. Never on UDP,
// where it lets another socket share a unicast port on Linux.
func (b *binder) reuseAddr(p plan) bool {
	return p.proto == tcp && p.port != 0 && b.os.reuseAddr
}

// bindEndpoint opens and binds the socket of one endpoint. The user's
// Control runs on it.
func (b *binder) bindEndpoint(p plan, ep endpoint, port uint16) (socket, uint16, error) {
	o := sockOpts{
		proto:     p.proto,
		family:    ep.family(),
		v6only:    ep.family() == inet6 && !ep.dual,
		reuseAddr: b.reuseAddr(p),
		exclusive: b.os.exclusive,
		control:   b.control,
	}
	return b.open(o, ep.role(), netip.AddrPortFrom(ep.addr, port))
}

// bindProbe opens and binds a socket that only picks or guards a port: an
// AF_INET one on 0.0.0.0, or a dual-stack one on [::]. It is never listened
// on and the user's Control does not run on it.
func (b *binder) bindProbe(p plan, f family) (socket, uint16, error) {
	o := sockOpts{proto: p.proto, family: f, reuseAddr: b.reuseAddr(p)}
	if f == inet4 {
		return b.open(o, "IPv4 port probe", netip.AddrPortFrom(netip.IPv4Unspecified(), p.port))
	}
	return b.open(o, "dual-stack port probe", netip.AddrPortFrom(netip.IPv6Unspecified(), p.port))
}

func (b *binder) open(o sockOpts, role string, a netip.AddrPort) (socket, uint16, error) {
	s, err := b.api.socket(o)
	if err != nil {
		return nil, 0, &bindError{role: role, fam: o.family, addr: a, err: err}
	}
	port, err := s.bind(a)
	if err != nil {
		s.close()
		return nil, 0, &bindError{role: role, fam: o.family, addr: a, err: err}
	}
	return s, port, nil
}
