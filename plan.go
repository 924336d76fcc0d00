package dualstack

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
)

// system is what Listen runs against: the host, or in tests a model.
type system struct {
	api    socketAPI
	facts  osFacts
	lookup func(ctx context.Context, network, host string) ([]netip.Addr, error)
	merge  func(lns []*net.TCPListener, addr net.Addr) (acceptor, error)
	// mergePackets reads from several UDP sockets as one.
	mergePackets func(conns []*net.UDPConn) (packetReader, error)
	// local reports whether an interface has the address; nil: assume so.
	local func(netip.Addr) bool
}

var hostSystem = system{
	api:    hostSockets,
	facts:  hostFacts,
	lookup: net.DefaultResolver.LookupNetIP,
	merge:  newAcceptor,

	mergePackets: newPacketReader,
	local:        hasAddr,
}

// hasAddr reports whether an interface of this host has the address a,
// or the host cannot say.
func hasAddr(a netip.Addr) bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return true
	}
	for _, ia := range addrs {
		if n, ok := ia.(*net.IPNet); ok {
			if b, ok := netip.AddrFromSlice(n.IP); ok && b.Unmap() == a.WithZone("") {
				return true
			}
		}
	}
	return false
}

var (
	errNegativeAttempts  = errors.New("dualstack: negative Attempts")
	errUnknownMode       = errors.New("dualstack: unknown Mode")
	errWildcardOverlap   = errors.New("dualstack: a wildcard address cannot share a port with another address of its family, which it already includes")
	errSingleSpecific    = errors.New("dualstack: Single mode serves a wildcard address on one socket, which cannot hold several specific addresses; use Separate or Auto")
	errNoAddresses       = errors.New("dualstack: no address to listen on")
	errSeveralPortsAsked = errors.New("dualstack: the addresses must share one port (or all be port 0, for one port chosen for all)")
	errSingleOne         = errors.New("dualstack: Single mode serves both families' wildcard on one dual-stack socket; for one family or a specific address, use Separate or Auto")
)

// plan turns the network and addresses of a Listen, ListenPacket or
// MultiListen call into the endpoints to bind: those of each address, on
// one port. Errors are the bare cause; the caller wraps them.
func (lc *ListenConfig) plan(ctx context.Context, sys system, pr proto, network string, addresses ...string) (plan, error) {
	if len(addresses) == 0 {
		return plan{}, errNoAddresses
	}
	var p plan
	for i, address := range addresses {
		q, err := lc.planAddress(ctx, sys, pr, network, address)
		if err != nil {
			if len(addresses) > 1 {
				err = fmt.Errorf("%s: %w", address, err)
			}
			return plan{}, err
		}
		if i == 0 {
			p = q
			continue
		}
		if q.port != p.port {
			return plan{}, fmt.Errorf("%w: %s is on port %d, %s on %d", errSeveralPortsAsked, addresses[0], p.port, address, q.port)
		}
		p.fallback = p.fallback && q.fallback
		for _, e := range q.eps {
			if !slices.Contains(p.eps, e) {
				p.eps = append(p.eps, e)
			}
		}
	}
	if len(addresses) > 1 {
		if err := checkOverlap(p.eps, "the addresses"); err != nil {
			return plan{}, err
		}
		if lc.Mode == Single && p.mode() != Single {
			return plan{}, errSingleSpecific
		}
		slices.SortStableFunc(p.eps, func(a, b endpoint) int { return cmp.Compare(a.family(), b.family()) })
	}
	return p, nil
}

// planAddress is plan for one address.
func (lc *ListenConfig) planAddress(ctx context.Context, sys system, pr proto, network, address string) (plan, error) {
	want4, want6, err := families(pr, network)
	if err != nil {
		return plan{}, err
	}
	if lc.Attempts < 0 {
		return plan{}, errNegativeAttempts
	}
	if lc.Mode < Auto || lc.Mode > Single {
		return plan{}, errUnknownMode
	}
	host, service := "", "0" // "" is the wildcard on port 0, as for net.Listen
	if address != "" {
		if host, service, err = net.SplitHostPort(address); err != nil {
			return plan{}, err
		}
	}
	port, err := net.DefaultResolver.LookupPort(ctx, network, service)
	if err != nil {
		return plan{}, err
	}
	p, err := lc.planHost(ctx, sys, plan{proto: pr, port: uint16(port)}, want4, want6, host)
	if err == nil && lc.Mode == Single && p.mode() != Single {
		err = errSingleOne
		if len(p.eps) > 1 {
			err = errSingleSpecific
		}
	}
	if err != nil {
		return plan{}, err
	}
	return p, nil
}

// planHost fills in p's endpoints for host, with the meaning net.Listen
// gives it: an IPv4 address (IPv4-mapped ones too) is refused for tcp6;
// an IPv6 one for tcp4, but for the unspecified address, which there is
// 0.0.0.0; a zone on the unspecified address means nothing; a UDP
// multicast address is its family's wildcard, as in net.ListenPacket
// (dualstack joins no group and shares no port: that is
// net.ListenMulticastUDP's).
func (lc *ListenConfig) planHost(ctx context.Context, sys system, p plan, want4, want6 bool, host string) (plan, error) {
	var addrs []netip.Addr
	switch {
	case host == "":
		return p.wildcard(lc.Mode, want4, want6), nil
	case strings.EqualFold(host, "localhost") || strings.EqualFold(host, "localhost."):
		// Never resolved: the name may be missing from the hosts file, or
		// DNS may answer it with something that is not loopback.
		if want4 {
			addrs = append(addrs, netip.AddrFrom4([4]byte{127, 0, 0, 1}))
		}
		if want6 {
			addrs = append(addrs, netip.IPv6Loopback())
		}
	default:
		if a, err := netip.ParseAddr(host); err == nil {
			a = a.Unmap()
			wild := a.WithZone("").IsUnspecified()
			if a.Is4() && !want4 || a.Is6() && !want6 && !wild {
				return plan{}, &net.AddrError{Err: "no suitable address found", Addr: host}
			}
			switch {
			case wild:
				return p.wildcard(lc.Mode, want4, want6), nil
			case a.IsMulticast() && p.proto == udp:
				return p.wildcard(lc.Mode, want4 && (a.Is4() || want6), want6 && a.Is6()), nil
			}
			addrs = []netip.Addr{a}
			break
		}
		qnet := "ip"
		switch {
		case !want6:
			qnet = "ip4"
		case !want4:
			qnet = "ip6"
		}
		var err error
		if addrs, err = sys.lookup(ctx, qnet, host); err != nil {
			return plan{}, err
		}
	}
	for _, a := range addrs {
		a = a.Unmap()
		if (a.Is4() && !want4) || (a.Is6() && !want6) || slices.ContainsFunc(p.eps, func(e endpoint) bool { return e.addr == a }) {
			continue
		}
		p.eps = append(p.eps, endpoint{addr: a})
	}
	if len(p.eps) == 0 {
		return plan{}, &net.AddrError{Err: "no suitable address found", Addr: host}
	}
	if err := checkOverlap(p.eps, host+" resolves to"); err != nil {
		return plan{}, err
	}
	slices.SortStableFunc(p.eps, func(a, b endpoint) int { return cmp.Compare(a.family(), b.family()) })
	p.fallback = want4 && want6 && lc.Mode == Auto
	return p, nil
}

// checkOverlap refuses a wildcard and another address of its family among
// eps, which what names (a host name, or the addresses of MultiListen).
func checkOverlap(eps []endpoint, what string) error {
	for _, f := range []family{inet4, inet6} {
		var wild, other netip.Addr
		for _, e := range eps {
			switch {
			case e.family() != f && !e.dual:
			case e.addr.IsUnspecified():
				wild = e.addr
			case !other.IsValid() && e.family() == f:
				other = e.addr
			}
		}
		if wild.IsValid() && other.IsValid() {
			return fmt.Errorf("%w: %s %v and %v", errWildcardOverlap, what, wild, other)
		}
	}
	return nil
}

// wildcard returns p serving the wildcard address of the families asked for.
func (p plan) wildcard(m Mode, want4, want6 bool) plan {
	switch {
	case want4 && want6 && m == Single:
		p.eps = []endpoint{{addr: netip.IPv6Unspecified(), dual: true}}
	case want4 && want6:
		p.eps = []endpoint{{addr: netip.IPv4Unspecified()}, {addr: netip.IPv6Unspecified()}}
		p.fallback = m == Auto
	case want4:
		p.eps = []endpoint{{addr: netip.IPv4Unspecified()}}
	default:
		p.eps = []endpoint{{addr: netip.IPv6Unspecified()}}
	}
	return p
}

// families returns the address families that a network name asks for.
func families(pr proto, network string) (want4, want6 bool, err error) {
	base := "tcp"
	if pr == udp {
		base = "udp"
	}
	switch network {
	case base:
		return true, true, nil
	case base + "4":
		return true, false, nil
	case base + "6":
		return false, true, nil
	}
	return false, false, net.UnknownNetworkError(network)
}
