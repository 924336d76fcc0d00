package dualstack

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/dualstack-go/dualstack/internal/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// modelSockets runs the binding algorithms against a model kernel.
type modelSockets struct{ k *model.Kernel }

type modelSocket struct {
	k *model.Kernel
	s *model.Socket
}

func (m modelSockets) socket(o sockOpts) (socket, error) {
	f := model.Family(4)
	if o.family == inet6 {
		f = 6
	}
	s := m.k.Open(f, model.Options{ReuseAddr: o.reuseAddr, Exclusive: o.exclusive}, "lib")
	if f == 6 {
		if err := m.k.SetV6Only(s, o.v6only); err != nil {
			return nil, os.NewSyscallError("setsockopt", err)
		}
	}
	return &modelSocket{m.k, s}, nil
}

// portRanges gives the model's ephemeral range for both families, for the
// binders that search ports themselves (NetBSD).
func (m modelSockets) portRanges(proto) (lo4, hi4, lo6, hi6 uint32, err error) {
	lo, hi := uint32(m.k.Lo), uint32(m.k.Hi)
	return lo, hi, lo, hi, nil
}

func (m *modelSocket) bind(a netip.AddrPort) (uint16, error) {
	port, err := m.k.Bind(m.s, a)
	if err != nil {
		return 0, os.NewSyscallError("bind", err)
	}
	return port, nil
}

func (m *modelSocket) listen() error {
	if err := m.k.Listen(m.s); err != nil {
		return os.NewSyscallError("listen", err)
	}
	return nil
}

func (m *modelSocket) close() error {
	m.k.Close(m.s)
	return nil
}

const modelLo, modelHi = 40000, 40007

var (
	holderAddrs4 = []netip.Addr{netip.IPv4Unspecified(), netip.MustParseAddr("127.0.0.1")}
	holderAddrs6 = []netip.Addr{netip.IPv6Unspecified(), netip.IPv6Loopback()}
)

// addHolders binds up to a dozen sockets of other programs on the ports of
// the model's ephemeral range: AF_INET specific and wildcard, AF_INET6
// dual-stack, IPv6-only and specific, with and without SO_REUSEADDR,
// SO_REUSEPORT and (Windows) SO_EXCLUSIVEADDRUSE, most of them listening.
// Binds the kernel refuses are dropped.
func addHolders(k *model.Kernel, rng *rand.Rand) {
	for range rng.IntN(13) {
		f, addr := model.Family(4), holderAddrs4[rng.IntN(2)]
		if rng.IntN(2) == 0 {
			f, addr = 6, holderAddrs6[rng.IntN(2)]
		}
		o := model.Options{
			V6Only:    f == 6 && rng.IntN(2) == 0,
			ReuseAddr: rng.IntN(5) < 2,
			ReusePort: rng.IntN(4) == 0,
			Exclusive: k.OS == model.Windows && rng.IntN(4) == 0,
		}
		s := k.Open(f, o, "holder")
		port := modelLo + uint16(rng.IntN(modelHi-modelLo+1))
		if _, err := k.Bind(s, netip.AddrPortFrom(addr, port)); err != nil {
			k.Close(s)
			continue
		}
		if rng.IntN(5) != 0 {
			k.Listen(s) // a refused listen leaves it bound
		}
	}
}

// misroute returns a description of the first connection to dst that the
// model would hand to a holder, or to a socket of ours that does not
// listen (and so refuses it), or "" if every socket it may reach is a
// listener of ours.
func misroute(k *model.Kernel, dst netip.AddrPort) string {
	got := k.Deliver(dst)
	if len(got) == 0 {
		return fmt.Sprintf("%v reaches no listener", dst)
	}
	for _, s := range got {
		if s.Owner != "lib" || !s.Listening {
			return fmt.Sprintf("%v reaches %v", dst, s)
		}
	}
	return ""
}

type modelCase struct {
	mode    Mode
	address string // "" for an explicit port picked at random
}

var modelCases = []modelCase{
	{Auto, ":0"}, {Separate, ":0"}, {Single, ":0"},
	{Auto, "localhost:0"}, {Separate, "localhost:0"},
	{Separate, ""}, {Single, ""},
}

func modelSeed(t *testing.T) uint64 {
	seed := uint64(os.Getpid())
	if s := os.Getenv("DUALSTACK_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("seed %d (set DUALSTACK_SEED to replay)", seed)
	return seed
}

// TestModelNeverMisroutes runs each OS's binding algorithm against a model
// of that OS, over thousands of randomized sets of other programs' sockets:
// a listener it returns holds every half on one port, and the model
// delivers connections to 127.0.0.1 and ::1 on that port to it and to no
// holder; a failure leaves nothing open.
//
// An explicit port on the BSDs keeps SO_REUSEADDR, as net.Listen sets it,
// so there a holder of a more specific address (127.0.0.1:P against our
// 0.0.0.0:P) keeps its traffic: the residual risk the package documents.
// Those are counted, and must be of that kind.
func TestModelNeverMisroutes(t *testing.T) {
	t.Parallel()
	const scenarios = 3000
	seed := modelSeed(t)
	for _, goos := range model.All {
		for _, pr := range []proto{tcp, udp} {
			if pr == udp && (goos == model.Windows || goos == model.OpenBSD) {
				continue // their models know TCP only
			}
			t.Run(string(goos)+"/"+pr.network(inet4)[:3], func(t *testing.T) {
				t.Parallel()
				rng := rand.New(rand.NewPCG(seed, uint64(len(goos))))
				facts := factsFor(string(goos))
				var listeners, failures, residual int
				for i := range scenarios {
					for _, c := range modelCases {
						k := model.New(goos, modelLo, modelHi, rng)
						k.UDP = pr == udp
						addHolders(k, rng)
						address := c.address
						if address == "" {
							address = fmt.Sprintf(":%d", modelLo+rng.IntN(modelHi-modelLo+1))
						}
						lc := ListenConfig{Mode: c.mode}
						p, err := lc.plan(context.Background(), hostSystem, pr, pr.network(inet4)[:3], address)
						require.NoError(t, err)
						b := lc.binder(system{api: modelSockets{k}, facts: facts})
						r, err := b.bind(p)
						if err != nil {
							failures++
							for _, s := range k.Sockets() {
								require.NotEqual(t, "lib", s.Owner, "scenario %d %v %s: %v left open after %v", i, c.mode, address, s, err)
							}
							if errors.Is(err, errors.ErrUnsupported) {
								continue
							}
							require.True(t, b.portTaken(err) || errors.Is(err, syscall.EADDRNOTAVAIL), "scenario %d: %v", i, err)
							continue
						}
						listeners++
						for _, s := range r.socks {
							require.Equal(t, r.port, s.(*modelSocket).s.Port, "one port")
						}
						for _, dst := range []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback()} {
							what := misroute(k, netip.AddrPortFrom(dst, r.port))
							if what == "" {
								continue
							}
							explicit := c.address == ""
							if explicit && goos != model.Linux && goos != model.Windows {
								got := k.Deliver(netip.AddrPortFrom(dst, r.port))
								require.Len(t, got, 1)
								require.Equal(t, dst, got[0].Addr, "scenario %d %v %s: %s, and not by a more specific holder\n%v", i, c.mode, address, what, k.Sockets())
								residual++
								continue
							}
							t.Fatalf("scenario %d %v %s: %s\nsockets: %v", i, c.mode, address, what, k.Sockets())
						}
						r.close()
					}
				}
				t.Logf("%s %s: %d scenarios x %d cases: %d listeners, 0 misrouted; %d refused (port taken or mode unsupported); %d explicit-port listeners where a more specific holder keeps its address (documented)",
					goos, pr.network(inet4)[:3], scenarios, len(modelCases), listeners, failures, residual)
				assert.Positive(t, listeners)
			})
		}
	}
}

// TestModelSeesTheBug points the same harness at what net.Listen("tcp",
// ":0") does on macOS, one AF_INET6 socket with IPV6_V6ONLY=0 and
// SO_REUSEADDR bound to [::]:0, and finds the misroute this package exists
// to prevent; on the Linux model the same calls are safe.
func TestModelSeesTheBug(t *testing.T) {
	t.Parallel()
	const scenarios = 3000
	seed := modelSeed(t)
	count := func(goos model.OS) (misrouted, listened int) {
		rng := rand.New(rand.NewPCG(seed, 99))
		for range scenarios {
			k := model.New(goos, modelLo, modelHi, rng)
			addHolders(k, rng)
			s := k.Open(6, model.Options{ReuseAddr: true}, "lib")
			port, err := k.Bind(s, netip.AddrPortFrom(netip.IPv6Unspecified(), 0))
			if err != nil || k.Listen(s) != nil {
				continue
			}
			listened++
			if misroute(k, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)) != "" {
				misrouted++
			}
		}
		return misrouted, listened
	}
	darwinBad, darwinN := count(model.Darwin)
	linuxBad, linuxN := count(model.Linux)
	t.Logf("net.Listen(\"tcp\", \":0\"): macOS model %d of %d listeners lose IPv4 clients to another socket; Linux model %d of %d",
		darwinBad, darwinN, linuxBad, linuxN)
	assert.Positive(t, darwinBad, "the macOS model should reproduce the misroute")
	assert.Zero(t, linuxBad, "Linux checks both families on a dual-stack bind")
}

// laterBinds are the binds of a later program next to a listener of ours,
// in the model: every loopback and wildcard address, with each option set.
func laterBinds(os model.OS) (socks []struct {
	f    model.Family
	addr netip.Addr
	o    model.Options
}) {
	addrs := []struct {
		f      model.Family
		addr   string
		v6only bool
	}{{4, "127.0.0.1", false}, {4, "0.0.0.0", false}, {6, "::1", true}, {6, "::", true}, {6, "::", false}}
	opts := []model.Options{{}, {ReuseAddr: true}, {ReusePort: true}, {ReuseAddr: true, ReusePort: true}}
	switch os {
	case model.FreeBSD:
		opts = append(opts, model.Options{ReusePortLB: true})
	case model.Windows:
		opts = append(opts, model.Options{Exclusive: true})
	}
	for _, a := range addrs {
		for _, o := range opts {
			o.V6Only = a.v6only
			socks = append(socks, struct {
				f    model.Family
				addr netip.Addr
				o    model.Options
			}{a.f, netip.MustParseAddr(a.addr), o})
		}
	}
	return socks
}

// TestModelLaterBinders runs, on each OS's model, the later-binder matrix
// that TestLaterBinderMatrix runs on the real kernels: next to each kind
// of listener of ours, a later program binds every loopback and wildcard
// address on its port, explicitly or through its ephemeral search, with
// each option set; where the model lets the bind succeed, the socket
// listens, and no connection to a loopback address the listener serves may
// reach it. For macOS this is the answer read from XNU's source; for
// FreeBSD and Linux it is the model's side of what the kernels showed.
// The control, the same listeners without guards, must lose traffic on the
// models of the kernels that need guards.
func TestModelLaterBinders(t *testing.T) {
	t.Parallel()
	kinds := []struct {
		mode    Mode
		address string
		hosts   []string
	}{
		{Separate, ":0", []string{"127.0.0.1", "::1"}},
		{Single, ":0", []string{"127.0.0.1", "::1"}},
		{Separate, "localhost:0", []string{"127.0.0.1", "::1"}},
		{Separate, "127.0.0.1:0", []string{"127.0.0.1"}},
		{Separate, "[::1]:0", []string{"::1"}},
	}
	for _, goos := range model.All {
		t.Run(string(goos), func(t *testing.T) {
			t.Parallel()
			for _, pr := range []proto{tcp, udp} {
				if pr == udp && (goos == model.Windows || goos == model.OpenBSD) {
					continue // their models know TCP only
				}
				for _, guarded := range []bool{true, false} {
					facts := factsFor(string(goos))
					facts.guards = facts.guards && guarded
					cases, allowed, took := 0, 0, 0
					var report []string
					for _, kind := range kinds {
						for _, later := range laterBinds(goos) {
							for _, ephemeral := range []bool{false, true} {
								k := model.New(goos, modelLo, modelHi, rand.New(rand.NewPCG(1, 2)))
								k.UDP = pr == udp
								lc := ListenConfig{Mode: kind.mode}
								p, err := lc.plan(context.Background(), hostSystem, pr, pr.network(inet4)[:3], kind.address)
								require.NoError(t, err)
								r, err := lc.binder(system{api: modelSockets{k}, facts: facts}).bind(p)
								if errors.Is(err, errors.ErrUnsupported) {
									continue
								}
								require.NoError(t, err, "%v %s", kind.mode, kind.address)
								cases++
								s := k.Open(later.f, later.o, "later")
								if ephemeral {
									if !slices.Contains(k.EphemeralPorts(s, later.addr), r.port) {
										continue
									}
									k.Place(s, later.addr, r.port)
								} else if _, err := k.Bind(s, netip.AddrPortFrom(later.addr, r.port)); err != nil {
									continue
								}
								allowed++
								k.Listen(s)
								if goos == model.Darwin && guarded && pr == tcp {
									report = append(report, fmt.Sprintf("allowed: next to %v %s, a later %v %+v (ephemeral %v)",
										kind.mode, kind.address, later.addr, later.o, ephemeral))
								}
								for _, host := range kind.hosts {
									if what := misroute(k, netip.AddrPortFrom(netip.MustParseAddr(host), r.port)); what != "" {
										took++
										report = append(report, fmt.Sprintf("TOOK: next to %v %s, a later %v %+v (ephemeral %v): %s",
											kind.mode, kind.address, later.addr, later.o, ephemeral, what))
									}
								}
							}
						}
					}
					t.Logf("%s model, %s, guards %v: %d cases, %d later binds allowed, %d took traffic", goos, pr.network(inet4)[:3], facts.guards, cases, allowed, took)
					switch {
					case guarded && (goos == model.Linux || factsFor(string(goos)).guards):
						assert.Zero(t, took, "%s", strings.Join(report, "\n"))
						if goos == model.Darwin && pr == tcp {
							// The answer for macOS, from the XNU model: the later
							// binds it lets succeed, none of which takes traffic.
							t.Logf("%s", strings.Join(report, "\n"))
						}
					case !guarded && factsFor(string(goos)).guards:
						assert.Positive(t, took, "without guards the %s model must lose traffic to later binders", goos)
					default:
						// OpenBSD, Windows: unverified; the figures are logged.
						for _, r := range report {
							t.Log(r)
						}
					}
				}
			}
		})
	}
}

// TestModelEmptyKernelBindsEveryMode is the positive control of the model
// tests: on an empty kernel every mode and address form binds on every
// OS that supports it, so a model rule that refused our own binds (such as
// an AF_INET wildcard refusing our dual-stack socket, or a guard refused
// next to our own wildcard) fails here rather than passing as "refused".
func TestModelEmptyKernelBindsEveryMode(t *testing.T) {
	t.Parallel()
	for _, goos := range model.All {
		for _, c := range modelCases {
			address := c.address
			if address == "" {
				address = fmt.Sprintf(":%d", modelLo)
			}
			k := model.New(goos, modelLo, modelHi, rand.New(rand.NewPCG(1, 2)))
			lc := ListenConfig{Mode: c.mode}
			p, err := lc.plan(context.Background(), hostSystem, tcp, "tcp", address)
			require.NoError(t, err)
			facts := factsFor(string(goos))
			r, err := lc.binder(system{api: modelSockets{k}, facts: facts}).bind(p)
			if c.mode == Single && facts.single == singleNone {
				require.ErrorIs(t, err, errors.ErrUnsupported, "%s", goos)
				continue
			}
			require.NoError(t, err, "%s %v %s on an empty kernel", goos, c.mode, address)
			for _, dst := range []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback()} {
				assert.Empty(t, misroute(k, netip.AddrPortFrom(dst, r.port)), "%s %v %s", goos, c.mode, address)
			}
		}
	}
}
