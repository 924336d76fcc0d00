//go:build linux || freebsd

package model_test

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/dualstack-go/dualstack/internal/model"
)

// pairAddrs are the (first, second) addresses of the pairs: a trailing v
// makes an IPv6-only socket, d a dual-stack one.
var pairAddrs = [][2]string{
	{"0.0.0.0", "0.0.0.0"}, {"127.0.0.1", "127.0.0.1"}, {"0.0.0.0", "127.0.0.1"}, {"127.0.0.1", "0.0.0.0"},
	{"::v", "::v"}, {"::d", "::d"}, {"::v", "::d"}, {"::d", "::v"}, {"::1v", "::1v"}, {"::v", "::1v"},
	{"0.0.0.0", "::d"}, {"::d", "0.0.0.0"}, {"127.0.0.1", "::d"}, {"::d", "127.0.0.1"},
}

// pairAddr is a pairAddrs entry as a family, an address and IPV6_V6ONLY.
func pairAddr(s string) (model.Family, netip.Addr, bool) {
	a, err := netip.ParseAddr(strings.TrimRight(s, "vd"))
	if err != nil {
		panic(err)
	}
	if a.Is4() {
		return 4, a, false
	}
	return 6, a, strings.HasSuffix(s, "v")
}

// pairOptions are the options a socket of a pair may have.
func pairOptions(lb bool) []model.Options {
	opts := []model.Options{{}, {ReuseAddr: true}, {ReusePort: true}, {ReuseAddr: true, ReusePort: true}}
	if lb {
		opts = append(opts, model.Options{ReusePortLB: true}, model.Options{ReusePort: true, ReusePortLB: true},
			model.Options{ReuseAddr: true, ReusePortLB: true})
	}
	return opts
}

// pairs binds every pair of sockets, each pair on a port of its own from
// next: every address pair of pairAddrs, every two options, every two
// users (root and the maker's), TCP with the first socket listening and
// UDP. The second bind must succeed or fail on the kernel as it does on
// the model. It returns the number of pairs and the disagreements, each
// reported.
func pairs(t *testing.T, os model.OS, l layer, lb bool, other *maker, next func() uint16) (n, disagreements int) {
	t.Helper()
	opts := pairOptions(lb)
	users := [][2]int{{0, 0}, {0, otherUID}, {otherUID, 0}, {otherUID, otherUID}}
	if other == nil {
		users = users[:1]
	}
	for _, udp := range []bool{false, true} {
		for _, addrs := range pairAddrs {
			ff, fa, fv := pairAddr(addrs[0])
			sf, sa, sv := pairAddr(addrs[1])
			for _, u := range users {
				for _, fo := range opts {
					for _, so := range opts {
						fo.V6Only, so.V6Only = fv, sv
						port := next()
						real, err := pairOnKernel(l, ff, fo, u[0], netip.AddrPortFrom(fa, port), sf, so, u[1], netip.AddrPortFrom(sa, port), udp, other)
						if err != nil {
							t.Fatalf("first bind of the pair on %v: %v", port, err)
						}
						k := model.New(os, 1, 65535, nil)
						k.UDP = udp
						first := k.Open(ff, fo, "first")
						first.UID = u[0]
						if _, err := k.Bind(first, netip.AddrPortFrom(fa, port)); err != nil {
							t.Fatalf("model: first bind %v: %v", first, err)
						}
						if !udp {
							k.Listen(first)
						}
						second := k.Open(sf, so, "second")
						second.UID = u[1]
						_, modelled := k.Bind(second, netip.AddrPortFrom(sa, port))
						n++
						if !sameErr(real, modelled) {
							disagreements++
							t.Errorf("udp %v: %v then %s %+v uid %d: kernel %v, model %v",
								udp, first, netip.AddrPortFrom(sa, port), so, u[1], real, modelled)
						}
					}
				}
			}
		}
	}
	return n, disagreements
}

// pairOnKernel binds the first socket (and listens, TCP), then the second,
// and returns the second bind's error; an error of the first is returned
// as the error.
func pairOnKernel(l layer, ff model.Family, fo model.Options, fu int, fa netip.AddrPort,
	sf model.Family, so model.Options, su int, sa netip.AddrPort, udp bool, other *maker) (second error, err error) {
	first, err := l.open(ff, fo, udp, other, fu)
	if err != nil {
		return nil, err
	}
	defer l.close(first)
	if _, err := l.bind(first, fa); err != nil {
		return nil, err
	}
	if !udp {
		if err := l.listen(first); err != nil {
			return nil, err
		}
	}
	fd, err := l.open(sf, so, udp, other, su)
	if err != nil {
		return nil, err
	}
	defer l.close(fd)
	_, second = l.bind(fd, sa)
	return second, nil
}

// pairsFigure prints the figure of a pairs run.
func pairsFigure(os string, n, d int) {
	fmt.Printf("FIGURE %s model pairs: %d binds next to one socket, %d disagreements\n", os, n, d)
}
