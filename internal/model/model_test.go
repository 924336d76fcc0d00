package model_test

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"syscall"
	"testing"

	"github.com/dualstack-go/dualstack/internal/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const port = 40000

type sock struct {
	fam  model.Family
	addr string
	opts model.Options
}

func (s sock) open(k *model.Kernel, owner string) *model.Socket {
	return k.Open(s.fam, s.opts, owner)
}

var (
	any4       = sock{4, "0.0.0.0", model.Options{}}
	any4Reuse  = sock{4, "0.0.0.0", model.Options{ReuseAddr: true}}
	lo4        = sock{4, "127.0.0.1", model.Options{}}
	dual       = sock{6, "::", model.Options{}}
	dualReuse  = sock{6, "::", model.Options{ReuseAddr: true}}
	v6only     = sock{6, "::", model.Options{V6Only: true}}
	lo6        = sock{6, "::1", model.Options{V6Only: true}}
	allHolders = []sock{any4, lo4, dual, v6only, lo6}
)

// bindResult binds existing, listening, then tries new on the same port:
// "ok", "INUSE", or for an ephemeral new, "P?" if it may land on the port
// and "skip" if it never does.
func bindResult(os model.OS, existing, new sock, ephemeral bool) string {
	k := model.New(os, port, port, rand.New(rand.NewPCG(1, 2)))
	e := existing.open(k, "holder")
	if _, err := k.Bind(e, netip.AddrPortFrom(netip.MustParseAddr(existing.addr), port)); err != nil {
		return "holder: " + err.Error()
	}
	if err := k.Listen(e); err != nil {
		return "holder listen: " + err.Error()
	}
	n := new.open(k, "new")
	if ephemeral {
		if len(k.EphemeralPorts(n, netip.MustParseAddr(new.addr))) > 0 {
			return "P?"
		}
		return "skip"
	}
	if err := k.CanBind(n, netip.AddrPortFrom(netip.MustParseAddr(new.addr), port)); err != nil {
		if err == syscall.EADDRINUSE {
			return "INUSE"
		}
		return err.Error()
	}
	return "ok"
}

// TestLinuxTable is the Linux table of DESIGN.md, measured on Linux 6.18.
func TestLinuxTable(t *testing.T) {
	t.Parallel()
	type row struct {
		existing []sock
		want     [5]string // [::]:P dual, [::]:P v6only, [::]:0 dual, [::]:0 v6only, 0.0.0.0:P
	}
	rows := []row{
		{[]sock{any4, lo4}, [5]string{"INUSE", "ok", "skip", "P?", "INUSE"}},
		{[]sock{dual}, [5]string{"INUSE", "INUSE", "skip", "skip", "INUSE"}},
		{[]sock{v6only, lo6}, [5]string{"INUSE", "INUSE", "skip", "skip", "ok"}},
	}
	for _, r := range rows {
		for _, e := range r.existing {
			got := [5]string{
				bindResult(model.Linux, e, dual, false),
				bindResult(model.Linux, e, v6only, false),
				bindResult(model.Linux, e, dual, true),
				bindResult(model.Linux, e, v6only, true),
				bindResult(model.Linux, e, any4, false),
			}
			assert.Equal(t, r.want, got, "existing %v", e)
		}
	}
}

// TestDarwinTable is the macOS table of DESIGN.md, read from XNU.
func TestDarwinTable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		existing sock
		want     [5]string // [::]:P dual, same +SO_REUSEADDR, [::]:0 dual, 0.0.0.0:P, 0.0.0.0:P +SO_REUSEADDR
	}{
		{any4, [5]string{"ok", "ok", "P?", "INUSE", "INUSE"}},
		{lo4, [5]string{"INUSE", "ok", "P?", "INUSE", "ok"}},
	}
	for _, tc := range tests {
		got := [5]string{
			bindResult(model.Darwin, tc.existing, dual, false),
			bindResult(model.Darwin, tc.existing, dualReuse, false),
			bindResult(model.Darwin, tc.existing, dual, true),
			bindResult(model.Darwin, tc.existing, any4, false),
			bindResult(model.Darwin, tc.existing, any4Reuse, false),
		}
		assert.Equal(t, tc.want, got, "existing %v", tc.existing)
	}
}

// TestDelivery: the most specific listener wins; for IPv4, an AF_INET
// wildcard beats a dual-stack socket.
func TestDelivery(t *testing.T) {
	t.Parallel()
	for _, os := range []model.OS{model.Linux, model.Darwin, model.FreeBSD} {
		k := model.New(os, port, port+10, rand.New(rand.NewPCG(1, 2)))
		bindAt := func(s sock, p uint16) *model.Socket {
			m := s.open(k, s.addr)
			_, err := k.Bind(m, netip.AddrPortFrom(netip.MustParseAddr(s.addr), p))
			require.NoError(t, err, "%v %v", os, s)
			require.NoError(t, k.Listen(m))
			return m
		}
		// On macOS the dual-stack socket may join an AF_INET wildcard; on
		// Linux only separate ports show the order.
		d := bindAt(dual, port+1)
		assert.Equal(t, []*model.Socket{d}, k.Deliver(netip.MustParseAddrPort("127.0.0.1:40001")), os)
		assert.Equal(t, []*model.Socket{d}, k.Deliver(netip.MustParseAddrPort("[::1]:40001")), os)
		v4 := bindAt(lo4, port+2)
		assert.Empty(t, k.Deliver(netip.MustParseAddrPort("[::1]:40002")), os)
		assert.Equal(t, []*model.Socket{v4}, k.Deliver(netip.MustParseAddrPort("127.0.0.1:40002")), os)
		if os != model.Linux {
			// A dual-stack socket bound after an AF_INET wildcard:
			// macOS keeps IPv4 on the AF_INET one; FreeBSD 15 hands it
			// to the newer wildcard, whatever its family (seen on the
			// kernel, and in_pcbinshash's ordering of the hash chain).
			a := bindAt(any4, port+3)
			d3 := bindAt(dual, port+3)
			want4 := a
			if os == model.FreeBSD {
				want4 = d3
			}
			assert.Equal(t, []*model.Socket{want4}, k.Deliver(netip.MustParseAddrPort("127.0.0.1:40003")), os)
			assert.Equal(t, []*model.Socket{d3}, k.Deliver(netip.MustParseAddrPort("[::1]:40003")), os)
		}
	}
}

// TestWindowsExclusive: an exclusive wildcard cannot bind next to anything,
// and nothing binds next to it.
func TestWindowsExclusive(t *testing.T) {
	t.Parallel()
	excl := sock{4, "0.0.0.0", model.Options{Exclusive: true}}
	for _, e := range []sock{any4, lo4, any4Reuse} {
		assert.Equal(t, "INUSE", bindResult(model.Windows, e, excl, false), "after %v", e)
	}
	for _, n := range []sock{any4, lo4, any4Reuse, {4, "127.0.0.1", model.Options{ReuseAddr: true}}} {
		assert.NotEqual(t, "ok", bindResult(model.Windows, excl, n, false), "%v next to an exclusive wildcard", n)
	}
	// Without options, a wildcard may join a specific socket, which keeps
	// its traffic.
	assert.Equal(t, "ok", bindResult(model.Windows, lo4, any4, false))
}

// TestOpenBSDNoDualStack: IPv6 sockets are IPv6-only and the families do
// not meet.
func TestOpenBSDNoDualStack(t *testing.T) {
	t.Parallel()
	k := model.New(model.OpenBSD, port, port, rand.New(rand.NewPCG(1, 2)))
	s := k.Open(6, model.Options{}, "x")
	assert.True(t, s.Opts.V6Only)
	assert.Equal(t, syscall.EINVAL, k.SetV6Only(s, false))
	for _, e := range allHolders {
		if e.fam == 4 {
			assert.Equal(t, "ok", bindResult(model.OpenBSD, e, v6only, false))
		}
	}
}

// TestDarwinRulesMatter: the rules of the macOS model that no FreeBSD
// kernel can check, each against what XNU's source says, and each switched
// off to show that the check sees it.
func TestDarwinRulesMatter(t *testing.T) {
	t.Parallel()
	checks := map[model.Rule]struct {
		want string // what XNU does
		run  func(k *model.Kernel) string
	}{
		// in_pcbbind: an ephemeral AF_INET bind looks up wildcards even
		// with SO_REUSEADDR, so it skips a port an AF_INET wildcard holds.
		model.XNUEphemeralV4Wild: {"skip", func(k *model.Kernel) string {
			h := k.Open(4, model.Options{}, "holder")
			k.Bind(h, netip.AddrPortFrom(netip.IPv4Unspecified(), port))
			k.Listen(h)
			s := k.Open(4, model.Options{ReuseAddr: true}, "new")
			if len(k.EphemeralPorts(s, netip.MustParseAddr("127.0.0.1"))) > 0 {
				return "P?"
			}
			return "skip"
		}},
		// in_pcblookup_hash_locked: IPv4 goes to the AF_INET wildcard
		// before a dual-stack one, even a newer one.
		model.XNUOldestWildcard: {"AF_INET", func(k *model.Kernel) string {
			a := k.Open(4, model.Options{}, "AF_INET")
			k.Bind(a, netip.AddrPortFrom(netip.IPv4Unspecified(), port))
			k.Listen(a)
			d := k.Open(6, model.Options{}, "dual")
			k.Bind(d, netip.AddrPortFrom(netip.IPv6Unspecified(), port))
			k.Listen(d)
			got := k.Deliver(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port))
			if len(got) != 1 {
				return fmt.Sprint(got)
			}
			return got[0].Owner
		}},
	}
	for _, r := range model.Rules(model.Darwin) {
		if !strings.HasPrefix(string(r), "xnu:") {
			continue // checked on the FreeBSD kernel (TestFreeBSDRulesMatter)
		}
		c, ok := checks[r]
		require.True(t, ok, "no check of %q", r)
		k := model.New(model.Darwin, port, port, rand.New(rand.NewPCG(1, 2)))
		assert.Equal(t, c.want, c.run(k), "%s", r)
		k = model.New(model.Darwin, port, port, rand.New(rand.NewPCG(1, 2)))
		k.Without(r)
		assert.NotEqual(t, c.want, c.run(k), "without %q the check still passes", r)
	}
}
