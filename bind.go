package dualstack

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"syscall"
)

// This file holds the binding algorithms. They are portable: they see the
// OS only through a socketAPI and an osFacts, so tests run every OS's
// variant against models of those kernels.

// endpoint is one socket that a listener is to hold.
type endpoint struct {
	addr  netip.Addr // IPv4 in its 4-byte form; IPv6 may carry a zone
	dual  bool       // the IPv6 wildcard with IPV6_V6ONLY cleared: Single mode
	guard guardKind  // asked, or why the listener holds it
}

// guardKind says whether an endpoint is one the caller asked for or a
// guard: a socket that holds an address of the port so that no later
// program can bind it and take the listener's traffic (see osFacts.guards).
type guardKind uint8

const (
	// asked: an address the caller asked for.
	asked guardKind = iota
	// guardListening: the loopback address of a family that the listener
	// serves on a wildcard. It listens, and what it accepts or reads is
	// the listener's: a bound socket that did not listen would take the
	// loopback traffic and refuse it (FreeBSD, XNU tcp_input).
	guardListening
	// guardBound: the wildcard of a family that the listener serves on
	// specific addresses only. It is bound and never listens, so
	// connections to the port's other addresses are refused as before.
	guardBound
)

func (e endpoint) family() family {
	if e.addr.Is4() {
		return inet4
	}
	return inet6
}

// role names the socket in error messages.
func (e endpoint) role() string {
	switch {
	case e.dual:
		return "dual-stack socket"
	case e.guard == guardListening:
		return e.family().String() + " loopback guard"
	case e.guard == guardBound:
		return e.family().String() + " wildcard guard"
	}
	return e.family().String() + " socket"
}

// listens reports whether the endpoint's socket listens (TCP) or is read
// from (UDP): every one but a bound guard.
func (e endpoint) listens() bool { return e.guard != guardBound }

// plan is what one Listen or ListenPacket call binds: every endpoint, on
// one port.
type plan struct {
	proto proto
	port  uint16     // 0: one port chosen for all endpoints
	eps   []endpoint // the addresses asked for, IPv4 first
	// guards are the guard endpoints the binder adds (binder.guarded).
	guards []endpoint
	// searched reports that port was chosen by binder.search, not asked
	// for: its sockets are treated as an ephemeral port's.
	searched bool
	// fallback reports whether the endpoints of a family are dropped
	// where the host cannot serve that family there, if the other family
	// remains (Auto mode).
	fallback bool
}

func (p plan) has(f family) bool {
	for _, ep := range p.eps {
		if ep.family() == f {
			return true
		}
	}
	return false
}

// wildcards reports whether every endpoint of p is a wildcard address.
func (p plan) wildcards() bool {
	for _, ep := range p.eps {
		if !ep.addr.IsUnspecified() {
			return false
		}
	}
	return true
}

// without returns the plan without its endpoints of family f, and whether
// that leaves anything to bind. Its guards are to be made again.
func (p plan) without(f family) (plan, bool) {
	var eps []endpoint
	for _, ep := range p.eps {
		if ep.family() != f {
			eps = append(eps, ep)
		}
	}
	p.eps, p.guards, p.fallback = eps, nil, false
	return p, len(eps) > 0
}

// all returns the endpoints to bind: those asked for, then the guards.
func (p plan) all() []endpoint {
	return append(p.eps[:len(p.eps):len(p.eps)], p.guards...)
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
	local    func(netip.Addr) bool // see system.local
	mptcp    bool                  // Multipath TCP for the sockets that listen
}

// bound is a plan carried out: one socket an endpoint, all on port. The
// endpoints are those asked for, IPv4 first, then the guards; a guard
// whose address no interface has is left out.
type bound struct {
	socks []socket
	eps   []endpoint
	port  uint16
}

func (r bound) close() { r.closeExcept(nil) }

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
	var notes []string
	if e.hint != "" {
		notes = append(notes, e.hint)
	}
	switch {
	case e.attempts == 1:
		notes = append(notes, "gave up after 1 attempt")
	case e.attempts > 1:
		notes = append(notes, fmt.Sprintf("gave up after %d attempts", e.attempts))
	}
	if len(notes) > 0 {
		msg += " (" + strings.Join(notes, "; ") + ")"
	}
	return msg
}

func (e *bindError) Unwrap() error { return e.err }

// lacks returns the family that err says the host cannot serve at the
// address a socket of it was being bound to, or 0: no AF_INET6 sockets,
// ::1 with IPv6 disabled, 127.0.0.1 removed from the loopback interface.
// An ephemeral bind that the BSDs refuse with EADDRNOTAVAIL for want of a
// port is not one: falling back then would leave the family's traffic on
// the port to whoever holds it.
func (b *binder) lacks(err error) family {
	var be *bindError
	if !errors.As(err, &be) || be.fam == 0 || !unservable(be.err) || b.rangeExhausted(err) {
		return 0
	}
	return be.fam
}

// bind carries out p: every endpoint bound on one port and listening, or
// an error and nothing left open.
func (b *binder) bind(p plan) (bound, error) {
	r, err := b.retry(b.guarded(p))
	f := b.lacks(err)
	if f != 0 && p.fallback {
		if q, ok := p.without(f); ok {
			return b.retry(b.guarded(q))
		}
	}
	other := inet4
	if f == inet4 {
		other = inet6
	}
	if f != 0 && p.has(other) {
		var be *bindError
		if errors.As(err, &be) {
			be.hint = fmt.Sprintf("this host cannot serve %v there; Auto mode would listen on %v alone", f, other)
		}
	}
	return r, err
}

// guarded returns p with the guards that the OS needs (osFacts.guards):
// the loopback address of each family served on a wildcard, and the
// wildcard of each family served on specific addresses only.
func (b *binder) guarded(p plan) plan {
	if !b.os.guards {
		return p
	}
	var wild, specific [7]bool // by family
	for _, ep := range p.eps {
		switch {
		case ep.dual:
			wild[inet4], wild[inet6] = true, true
		case ep.addr.IsUnspecified():
			wild[ep.family()] = true
		default:
			specific[ep.family()] = true
		}
	}
	for _, f := range []family{inet4, inet6} {
		switch {
		case wild[f]:
			lo := loopback(f)
			if !slices.ContainsFunc(p.eps, func(e endpoint) bool { return e.addr == lo }) {
				p.guards = append(p.guards, endpoint{addr: lo, guard: guardListening})
			}
		case specific[f]:
			p.guards = append(p.guards, endpoint{addr: unspecified(f), guard: guardBound})
		}
	}
	return p
}

func loopback(f family) netip.Addr {
	if f == inet4 {
		return netip.AddrFrom4([4]byte{127, 0, 0, 1})
	}
	return netip.IPv6Loopback()
}

func unspecified(f family) netip.Addr {
	if f == inet4 {
		return netip.IPv4Unspecified()
	}
	return netip.IPv6Unspecified()
}

// retry runs one attempt after another while an ephemeral bind finds its
// port taken, up to b.attempts. The socket that picked the port of a
// failed attempt stays bound until the end, so that the kernel's search
// does not offer that port again; otherwise, on kernels whose search runs
// on from a random start to the next free port (FreeBSD), the ports just
// after ones held by the other family would rarely be picked.
func (b *binder) retry(p plan) (bound, error) {
	if p.port == 0 && b.os.searchPorts && p.mode() != Single {
		if rg, ok := b.api.(portRanger); ok {
			return b.search(p, rg)
		}
	}
	try := b.listenSeparate
	if p.mode() == Single {
		try = b.listenSingle
	}
	var held []socket
	defer func() {
		for _, s := range held {
			s.close()
		}
	}()
	for n := 1; ; n++ {
		r, picker, err := try(p)
		if picker != nil {
			held = append(held, picker)
		}
		if p.port == 0 && b.rangeExhausted(err) {
			// No port is left for the bind that picks one; with the
			// ports of failed attempts held, that ends the search.
			var be *bindError
			if errors.As(err, &be) {
				be.hint = "no free port left in the ephemeral range"
				if n > 1 {
					be.attempts = n
				}
			}
			return r, err
		}
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

// portRanger is a socket layer that tells its ephemeral port ranges.
type portRanger interface {
	// portRanges returns the ranges that ephemeral ports of IPv4 and of
	// IPv6 come from.
	portRanges(pr proto) (lo4, hi4, lo6, hi6 uint32, err error)
}

// search is retry for a kernel whose own ephemeral search cannot be
// trusted (osFacts.searchPorts): it tries the ports of the ephemeral range
// itself, in a random order, with explicit binds, which the kernel checks
// in full. The first endpoint's bind is made without SO_REUSEADDR, so that
// it is refused wherever another socket of its family holds the port on
// any address. b.attempts bounds the attempts in which that bind succeeds
// and another fails; each port is tried once.
func (b *binder) search(p plan, rg portRanger) (bound, error) {
	lo4, hi4, lo6, hi6, err := rg.portRanges(p.proto)
	if err != nil {
		return bound{}, err
	}
	lo, hi, err := intersectRanges(lo4, hi4, lo6, hi6)
	if err != nil {
		return bound{}, err
	}
	p.searched = true
	var last error
	attempts := 0
	for _, i := range rand.Perm(int(hi-lo) + 1) {
		p.port = lo + uint16(i)
		r, _, err := b.listenSeparate(p)
		if err == nil || !b.portTaken(err) {
			return r, err
		}
		last = err
		var be *bindError
		if errors.As(err, &be) && be.addr == (netip.AddrPortFrom(p.eps[0].addr, p.port)) {
			continue // the first bind: another socket holds the port
		}
		if attempts++; attempts >= b.attempts {
			if be != nil {
				be.attempts = attempts
			}
			return bound{}, err
		}
	}
	var be *bindError
	if errors.As(last, &be) {
		be.hint = "no free port left in the ephemeral range"
	}
	return bound{}, last
}

// rangeExhausted reports whether err is the failure of an ephemeral bind
// because the kernel found no port: EADDRINUSE (Linux), or EADDRNOTAVAIL
// (the BSDs) for an address that an interface has; a wildcard always.
func (b *binder) rangeExhausted(err error) bool {
	var be *bindError
	return errors.As(err, &be) && be.addr.Port() == 0 &&
		(addrInUse(be.err) || notAssignable(be.err) && b.isLocal(be.addr.Addr()))
}

// isLocal reports whether a is a wildcard or an address an interface has.
func (b *binder) isLocal(a netip.Addr) bool {
	return a.IsUnspecified() || b.local == nil || b.local(a)
}

// portTaken reports whether err says that another socket holds the port.
func (b *binder) portTaken(err error) bool {
	return addrInUse(err) || b.os.deniedIsTaken && accessDenied(err)
}

// listenSeparate binds one socket an endpoint, each of its own family, on
// one port. With an ephemeral port the first bind picks the port: on Linux,
// for the two wildcards, a dual-stack probe, whose port search skips ports
// held by either family; otherwise the first endpoint, IPv4 where there is
// one, because the IPv6 port search of the other kernels ignores AF_INET
// sockets, and because a probe of the wildcards is wider than specific
// addresses (localhost): it would skip ports held on other addresses. The other binds
// then fail if their half of the port is taken, and the caller retries.
// On such a failure the first endpoint's socket is returned open as the
// picker, for the caller to hold; everything else is closed.
func (b *binder) listenSeparate(p plan) (r bound, picker socket, err error) {
	r = bound{port: p.port}
	defer func() {
		if err != nil {
			r.closeExcept(picker)
			r = bound{}
		}
	}()
	eps := p.all()
	if r.port == 0 {
		if b.os.dualProbe && p.has(inet4) && p.has(inet6) && p.wildcards() {
			probe, port, err := b.bindProbe(p, inet6)
			if err != nil {
				return r, nil, err
			}
			probe.close()
			r.port = port
		} else {
			s, port, err := b.bindEndpoint(p, eps[0], 0)
			if err != nil {
				return r, nil, err
			}
			r.add(s, eps[0])
			r.port = port
			eps = eps[1:]
			picker = s
		}
	}
	if err := b.bindAll(p, &r, eps); err != nil {
		return r, picker, err
	}
	return r, nil, b.listenAll(r)
}

// bindAll binds the socket of each endpoint on r.port. A guard whose
// address no interface has is left out: no other program can bind it
// either.
func (b *binder) bindAll(p plan, r *bound, eps []endpoint) error {
	for _, ep := range eps {
		s, _, err := b.bindEndpoint(p, ep, r.port)
		if err != nil {
			if ep.guard != asked && notAssignable(err) {
				continue
			}
			return err
		}
		r.add(s, ep)
	}
	return nil
}

// listenSingle binds Single mode's one dual-stack socket, the way the OS
// allows it to be done safely, and its guards. On a failure after the
// probe picked the port, the probe is returned open as the picker.
func (b *binder) listenSingle(p plan) (r bound, picker socket, err error) {
	defer func() {
		if err != nil {
			r.close()
			r = bound{}
		}
	}()
	ep := p.eps[0]
	switch b.os.single {
	case singleDirect:
		s, port, err := b.bindEndpoint(p, ep, p.port)
		if err != nil {
			return r, nil, err
		}
		r.add(s, ep)
		r.port = port
		err = b.bindAll(p, &r, p.guards)
		if err != nil {
			return r, nil, err
		}
	case singleHeldProbe:
		// While the probe holds the IPv4 side of the port, no other
		// AF_INET socket can bind it and take IPv4 traffic from ours.
		probe, port, err := b.bindProbe(p, inet4)
		if err != nil {
			return r, nil, err
		}
		s, _, err := b.bindEndpoint(p, ep, port)
		if err == nil {
			r.add(s, ep)
			r.port = port
			err = b.bindAll(p, &r, p.guards)
		}
		if err != nil {
			return r, probe, err
		}
		probe.close()
	default:
		return r, nil, fmt.Errorf("dualstack: Single mode is not supported on %s: %s: %w",
			b.os.goos, b.os.singleWhy, errors.ErrUnsupported)
	}
	return r, nil, b.listenAll(r)
}

func (r *bound) add(s socket, ep endpoint) {
	r.socks = append(r.socks, s)
	r.eps = append(r.eps, ep)
}

// closeExcept closes every socket but keep.
func (r bound) closeExcept(keep socket) {
	for _, s := range r.socks {
		if s != keep {
			s.close()
		}
	}
}

// listenAll starts listening on every socket that listens, once all are
// bound: the guards first, so that no connection to a guarded loopback
// address meets a guard that is bound but not yet listening, which would
// refuse it. It closes nothing: its callers do on error.
func (b *binder) listenAll(r bound) error {
	for _, guards := range []bool{true, false} {
		if err := b.listenSome(r, guards); err != nil {
			return err
		}
	}
	return nil
}

func (b *binder) listenSome(r bound, guards bool) error {
	for i, s := range r.socks {
		ep := r.eps[i]
		if !ep.listens() || (ep.guard != asked) != guards {
			continue
		}
		if err := s.listen(); err != nil {
			return &bindError{role: ep.role(), fam: ep.family(), addr: netip.AddrPortFrom(ep.addr, r.port), err: err}
		}
	}
	return nil
}

// reuseAddr reports whether the sockets of p get SO_REUSEADDR: on explicit
// TCP ports, where the OS is one whose listeners Go gives it. Never on UDP,
// where it lets another socket share a unicast port on Linux.
func (b *binder) reuseAddr(p plan) bool {
	return p.proto == tcp && p.port != 0 && !p.searched && b.os.reuseAddr
}

// bindEndpoint opens and binds the socket of one endpoint. The user's
// Control runs on it. A guard gets SO_REUSEADDR, TCP or UDP: the kernels
// that need guards (osFacts.guards) refuse a more specific address next
// to our own wildcard, or a wildcard next to our own specific address,
// without it, and on them it lets no one share the guard's address.
func (b *binder) bindEndpoint(p plan, ep endpoint, port uint16) (socket, uint16, error) {
	o := sockOpts{
		proto:     p.proto,
		family:    ep.family(),
		v6only:    ep.family() == inet6 && !ep.dual,
		reuseAddr: b.reuseAddr(p) || ep.guard != asked,
		private:   p.port == 0 || p.searched,
		exclusive: b.os.exclusive,
		control:   b.control,
		mptcp:     b.mptcp && p.proto == tcp,
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

// intersectRanges returns the ports in both lo4..hi4 and lo6..hi6, or
// lo4..hi4 where they do not meet.
func intersectRanges(lo4, hi4, lo6, hi6 uint32) (lo, hi uint16, err error) {
	if lo4 > hi4 {
		lo4, hi4 = hi4, lo4
	}
	if lo6 > hi6 {
		lo6, hi6 = hi6, lo6
	}
	l, h := max(lo4, lo6), min(hi4, hi6)
	if l > h {
		l, h = lo4, hi4
	}
	if l == 0 || h > 65535 {
		return 0, 0, fmt.Errorf("dualstack: ephemeral port range %d-%d", l, h)
	}
	return uint16(l), uint16(h), nil
}
