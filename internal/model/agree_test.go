//go:build linux || freebsd

package model_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/dualstack-go/dualstack/internal/model"
	"golang.org/x/sys/unix"
)

// agreement runs randomized scenarios on the real kernel and on its model
// at once, each a fresh sequence of socket, bind, listen, connect and
// close calls on the ports of a narrow range, and compares every result:
// explicit binds, listens and connects must agree, an ephemeral port the
// kernel picks must be one the model allows (and the kernel may fail only
// where the model has none), and a connection to 127.0.0.1 or ::1 on each
// port of the range must reach a socket the model says it may: refused
// where the model's socket is bound but not listening.
type agreement struct {
	os model.OS
	// window returns the ephemeral range of scenario i and makes it the
	// kernel's. A kernel that keeps TIME_WAIT sockets gets a fresh range
	// for each scenario.
	window func(i int) (lo, hi uint16)
	// lb reports whether the kernel has SO_REUSEPORT_LB; connect whether
	// scenarios connect sockets and leave some in TIME_WAIT.
	lb, connect bool
	// without are model rules switched off, to show that they matter.
	without []model.Rule
	// udp makes the scenarios UDP ones: no listens; a datagram, not a
	// connection, shows who receives.
	udp bool
	// other, if set, makes some sockets as a second user.
	other *maker
	// net is the socket layer the kernel's side runs on: the host's
	// (nil), or another, such as NetBSD's rump stack.
	net layer
}

// layer returns the agreement's socket layer.
func (a agreement) layer() layer {
	if a.net == nil {
		return hostLayer{}
	}
	return a.net
}

type stats struct {
	explicit, ephemeral, listens, connects, closes, deliveries int
}

func (st stats) String() string {
	return fmt.Sprintf("%d explicit binds, %d ephemeral binds, %d listens, %d connects, %d closes, %d deliveries",
		st.explicit, st.ephemeral, st.listens, st.connects, st.closes, st.deliveries)
}

func seed(t *testing.T) uint64 {
	seed := uint64(os.Getpid())
	if s := os.Getenv("DUALSTACK_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("seed %d (set DUALSTACK_SEED to replay)", seed)
	return seed
}

// run runs n scenarios and returns how many disagreed, reporting the first
// few.
func (a agreement) run(t *testing.T, n int) (disagreements int, st stats) {
	rng := rand.New(rand.NewPCG(seed(t), 7))
	for i := range n {
		if err := a.nth(i, rng, &st); err != nil {
			disagreements++
			if disagreements <= 5 {
				t.Errorf("scenario %d: %v", i, err)
			}
		}
	}
	return disagreements, st
}

// firstDisagreement runs up to n scenarios from a fixed seed and returns
// the number of the first that disagrees, or -1. A scenario on which the
// full model disagrees as well shows nothing about the rules switched off:
// it is an error of the test, and the search goes on.
func (a agreement) firstDisagreement(t *testing.T, n int) (int, error) {
	rng := rand.New(rand.NewPCG(1, 7))
	var st stats
	for i := range n {
		err := a.nth(i, rng, &st)
		var full fullDisagreement
		switch {
		case errors.As(err, &full):
			t.Errorf("scenario %d: %v", i, err)
		case err != nil:
			return i, err
		}
	}
	return -1, nil
}

// rulesMatter switches each rule off in turn and requires the model, so
// changed, to disagree with the kernel within n scenarios, TCP or UDP, on
// a scenario where the model with every rule agrees.
func (a agreement) rulesMatter(t *testing.T, rules []model.Rule, n int) {
	total := 0
	defer func() { t.Logf("%d rules, %d scenarios", len(rules), total) }()
	for _, r := range rules {
		found := false
		for _, udp := range []bool{false, true} {
			b := a
			b.without, b.udp = []model.Rule{r}, udp
			i, err := b.firstDisagreement(t, n)
			if i < 0 {
				total += n
				continue
			}
			total += i + 1
			first, _, _ := strings.Cut(err.Error(), "\n")
			t.Logf("without %q: %s scenario %d disagrees: %s", r, map[bool]string{false: "TCP", true: "UDP"}[udp], i, first)
			found = true
			break
		}
		if !found {
			t.Errorf("without %q the model still agrees with the kernel over %d TCP and %d UDP scenarios", r, n, n)
		}
	}
}

type pair struct {
	fd   int
	m    *model.Socket // the model's socket
	full *model.Socket // the full model's, when rules are switched off
	peer int           // the anchor's end of a connection, or -1
}

var (
	addrs4 = []netip.Addr{netip.MustParseAddr("0.0.0.0"), netip.MustParseAddr("127.0.0.1")}
	// The IPv6 addresses, IPv4-mapped ones included: an AF_INET6 socket
	// bound to ::ffff:a.b.c.d is an AF_INET one to the kernel.
	addrs6 = []netip.Addr{netip.MustParseAddr("::"), netip.MustParseAddr("::1"),
		netip.MustParseAddr("::"), netip.MustParseAddr("::1"),
		netip.MustParseAddr("::ffff:0.0.0.0"), netip.MustParseAddr("::ffff:127.0.0.1")}
)

// anchorPort is the first of the ports, outside every scenario's range,
// that connected sockets connect to: each connection of a scenario has
// its own, so that no two share a 4-tuple.
const anchorPort = 19900

// clientPort is the port, outside every scenario's range, from which
// deliveries connect and send.
const clientPort = 19800

// trial is one scenario under way: the kernel's sockets and the model's.
type trial struct {
	a       agreement
	rng     *rand.Rand
	k       *model.Kernel
	full    *model.Kernel // every rule on, next to k when rules are off
	lo, hi  uint16
	st      *stats
	socks   []*pair
	anchors []int
	trace   []string
	// scripted makes every socket root's: a script shows one rule.
	scripted bool
}

func (a agreement) newTrial(rng *rand.Rand, lo, hi uint16, st *stats) *trial {
	k := model.New(a.os, lo, hi, rng)
	k.UDP = a.udp
	k.Without(a.without...)
	tr := &trial{a: a, rng: rng, k: k, lo: lo, hi: hi, st: st}
	if len(a.without) > 0 {
		// A generator of its own: the scenario's draws stay the same.
		tr.full = model.New(a.os, lo, hi, rand.New(rand.NewPCG(1, 2)))
		tr.full.UDP = a.udp
	}
	return tr
}

// fullDisagreement is a disagreement of the model with every rule on: a
// scenario that cannot show that a rule switched off matters.
type fullDisagreement struct{ err error }

func (e fullDisagreement) Error() string { return "the full model disagrees too: " + e.err.Error() }
func (e fullDisagreement) Unwrap() error { return e.err }

// modelOf picks a pair's socket in one of the trial's models.
type modelOf func(*pair) *model.Socket

func mainModel(p *pair) *model.Socket { return p.m }
func fullModel(p *pair) *model.Socket { return p.full }

// judge runs check against the full model, if there is one, and then the
// model under test.
func (tr *trial) judge(check func(k *model.Kernel, s modelOf) error) error {
	if tr.full != nil {
		if err := check(tr.full, fullModel); err != nil {
			return fullDisagreement{err}
		}
	}
	return check(tr.k, mainModel)
}

// end closes every socket, and adds the trace to err.
func (tr *trial) end(err error) error {
	l := tr.a.layer()
	for _, p := range tr.socks {
		if p.fd >= 0 {
			l.close(p.fd)
		}
		if p.peer >= 0 {
			l.close(p.peer)
		}
	}
	for _, fd := range tr.anchors {
		if fd >= 0 {
			l.close(fd)
		}
	}
	if err != nil {
		err = fmt.Errorf("%w\ntrace:\n  %s\nmodel: %v", err, strings.Join(tr.trace, "\n  "), tr.k.Sockets())
	}
	return err
}

func (tr *trial) live() []*pair {
	var live []*pair
	for _, p := range tr.socks {
		if !p.m.Closed {
			live = append(live, p)
		}
	}
	return live
}

// connect connects a bound socket to an anchor of its own.
func (tr *trial) connect(p *pair) error {
	tr.st.connects++
	peer, kerr := connectAnchor(tr.a.layer(), p.fd, p.m, len(tr.anchors), &tr.anchors, tr.a.udp)
	p.peer = peer
	tr.trace = append(tr.trace, fmt.Sprintf("connect %v: %v", p.m, kerr))
	return tr.judge(func(k *model.Kernel, s modelOf) error {
		if merr := k.Connect(s(p), anchorHost(p.m.Family)); !sameErr(kerr, merr) {
			return fmt.Errorf("connect %v: kernel %v, model %v", s(p), kerr, merr)
		}
		return nil
	})
}

// listen starts a bound socket listening. Linux checks the port again,
// against sockets bound since.
func (tr *trial) listen(p *pair) error {
	tr.st.listens++
	kerr := tr.a.layer().listen(p.fd)
	tr.trace = append(tr.trace, fmt.Sprintf("listen %v: %v", p.m, kerr))
	return tr.judge(func(k *model.Kernel, s modelOf) error {
		if merr := k.Listen(s(p)); !sameErr(kerr, merr) {
			return fmt.Errorf("listen %v: kernel %v, model %v", s(p), kerr, merr)
		}
		return nil
	})
}

// close closes a socket; a connected one is left in TIME_WAIT, since the
// anchor's end closes after it.
func (tr *trial) close(p *pair) {
	l := tr.a.layer()
	l.close(p.fd)
	if p.peer >= 0 {
		l.close(p.peer)
		p.peer = -1
	}
	p.fd = -1
	tr.k.Close(p.m)
	if tr.full != nil {
		tr.full.Close(p.full)
	}
	tr.trace = append(tr.trace, "close "+p.m.String())
	tr.st.closes++
}

// bind opens a socket with o and binds it to addr:port (port 0: the
// ephemeral search). It returns the pair, or nil where the kernel refused
// as the model does.
func (tr *trial) bind(fam model.Family, addr netip.Addr, port uint16, o model.Options) (*pair, error) {
	uid := 0
	if tr.a.other != nil && !tr.scripted && tr.rng.IntN(3) == 0 {
		uid = otherUID
	}
	fd, err := tr.a.layer().open(fam, o, tr.a.udp, tr.a.other, uid)
	if err != nil {
		return nil, err
	}
	p := &pair{fd: fd, m: tr.k.Open(fam, o, "s"), peer: -1}
	p.m.UID = uid
	if tr.full != nil {
		p.full = tr.full.Open(fam, o, "s")
		p.full.UID = uid
	}
	tr.trace = append(tr.trace, fmt.Sprintf("bind %v %+v", netip.AddrPortFrom(addr, port), o))
	got, kerr := tr.a.layer().bind(fd, netip.AddrPortFrom(addr, port))
	if port == 0 {
		tr.st.ephemeral++
		err = tr.judge(func(k *model.Kernel, s modelOf) error {
			allowed := k.EphemeralPorts(s(p), addr)
			switch {
			case kerr != nil && len(allowed) > 0:
				return fmt.Errorf("ephemeral bind of %v %+v: kernel %v, model allows ports %v", addr, o, kerr, allowed)
			case kerr == nil && !contains(allowed, got):
				return fmt.Errorf("ephemeral bind of %v %+v: kernel took port %d, model allows %v", addr, o, got, allowed)
			case kerr == nil:
				k.PlaceEphemeral(s(p), addr, got)
			}
			return nil
		})
		if kerr == nil {
			tr.trace[len(tr.trace)-1] += fmt.Sprintf(" -> %d", got)
		}
	} else {
		tr.st.explicit++
		err = tr.judge(func(k *model.Kernel, s modelOf) error {
			if _, merr := k.Bind(s(p), netip.AddrPortFrom(addr, port)); !sameErr(kerr, merr) {
				return fmt.Errorf("bind %v %+v: kernel %v, model %v", netip.AddrPortFrom(addr, port), o, kerr, merr)
			}
			return nil
		})
	}
	if err != nil || kerr != nil {
		tr.a.layer().close(fd)
		return nil, err
	}
	tr.socks = append(tr.socks, p)
	return p, nil
}

// deliveries connects to 127.0.0.1 and ::1 on every port of the range.
func (tr *trial) deliveries() error {
	for p := tr.lo; p <= tr.hi; p++ {
		for _, dst := range []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1")} {
			tr.st.deliveries++
			to := netip.AddrPortFrom(dst, p)
			if tr.a.udp {
				got, err := receiver(tr.a.layer(), tr.socks, to)
				if err != nil {
					return err
				}
				err = tr.judge(func(k *model.Kernel, s modelOf) error { return judgeDatagram(k, s, to, got) })
				if err != nil {
					return err
				}
				continue
			}
			got, refused, err := acceptor(tr.a.layer(), tr.socks, to)
			if err != nil {
				return err
			}
			if err := tr.judge(func(k *model.Kernel, s modelOf) error { return judgeConn(k, s, to, got, refused) }); err != nil {
				return err
			}
		}
	}
	return nil
}

// scripts are scenarios written out, run before the random ones: kernel
// behaviours that random scenarios meet once in thousands.
func (a agreement) scripts() []func(tr *trial) error {
	var out []func(tr *trial) error
	must := func(p *pair, err error) func(func(*pair) error) error {
		return func(next func(*pair) error) error {
			if err != nil {
				return err
			}
			if p == nil {
				return fmt.Errorf("the script's bind was refused by both")
			}
			return next(p)
		}
	}
	lo4, any4 := netip.MustParseAddr("127.0.0.1"), netip.IPv4Unspecified()
	mapped := netip.MustParseAddr("::ffff:127.0.0.1")
	if a.udp {
		if a.lb && a.connect {
			// A SO_REUSEPORT_LB socket that connects leaves its group, and
			// the wildcard's group takes 127.0.0.1 again, not the socket
			// bound there since.
			out = append(out, func(tr *trial) error {
				return must(tr.bind(4, lo4, tr.lo, model.Options{ReusePortLB: true}))(func(p *pair) error {
					if _, err := tr.bind(4, any4, tr.lo, model.Options{ReusePortLB: true}); err != nil {
						return err
					}
					if err := tr.connect(p); err != nil {
						return err
					}
					if _, err := tr.bind(4, lo4, tr.lo, model.Options{ReusePort: true}); err != nil {
						return err
					}
					return tr.deliveries()
				})
			})
		}
		return out
	}
	if a.lb {
		// An AF_INET group on 127.0.0.1, listening, and a newer group of
		// one AF_INET6 socket bound to ::ffff:127.0.0.1, not listening:
		// the newer group is found, has no listener, and the bound socket
		// refuses the connection.
		out = append(out, func(tr *trial) error {
			return must(tr.bind(4, lo4, tr.lo, model.Options{ReusePortLB: true}))(func(p *pair) error {
				if err := tr.listen(p); err != nil {
					return err
				}
				if _, err := tr.bind(6, mapped, tr.lo, model.Options{ReusePortLB: true}); err != nil {
					return err
				}
				return tr.deliveries()
			})
		})
	}
	if a.lb {
		// An exact SO_REUSEPORT_LB group whose only member left before
		// listening stays, and hides the wildcard's group: 127.0.0.1
		// reaches the later bound socket, which refuses it.
		out = append(out, func(tr *trial) error {
			return must(tr.bind(4, lo4, tr.lo, model.Options{ReusePortLB: true}))(func(p *pair) error {
				tr.close(p)
				return must(tr.bind(4, any4, tr.lo, model.Options{ReuseAddr: true, ReusePortLB: true}))(func(w *pair) error {
					if err := tr.listen(w); err != nil {
						return err
					}
					if _, err := tr.bind(4, lo4, tr.lo, model.Options{ReusePort: true}); err != nil {
						return err
					}
					return tr.deliveries()
				})
			})
		})
	}
	// An AF_INET socket and an AF_INET6 one on ::ffff:127.0.0.1, sharing
	// the port by SO_REUSEPORT: which one takes 127.0.0.1.
	out = append(out, func(tr *trial) error {
		for _, addr := range []netip.Addr{lo4, mapped} {
			fam := model.Family(4)
			if addr.Is6() {
				fam = 6
			}
			p, err := tr.bind(fam, addr, tr.lo, model.Options{ReusePort: true})
			if err != nil {
				return err
			}
			if p != nil {
				if err := tr.listen(p); err != nil {
					return err
				}
			}
		}
		return tr.deliveries()
	})
	if a.connect && a.lb {
		// A dual-stack socket with SO_REUSEPORT_LB whose connect is
		// refused (EOPNOTSUPP) is IPv6-only all the same: an AF_INET
		// wildcard binds its port.
		out = append(out, func(tr *trial) error {
			return must(tr.bind(6, netip.IPv6Unspecified(), tr.lo, model.Options{ReusePortLB: true}))(func(d *pair) error {
				if err := tr.connect(d); err != nil {
					return err
				}
				if _, err := tr.bind(4, any4, tr.lo, model.Options{}); err != nil {
					return err
				}
				return tr.deliveries()
			})
		})
	}
	if a.connect {
		// A dual-stack socket connected over IPv6 is IPv6-only: an AF_INET
		// wildcard binds its port.
		out = append(out, func(tr *trial) error {
			return must(tr.bind(6, netip.IPv6Unspecified(), tr.lo, model.Options{}))(func(d *pair) error {
				if err := tr.connect(d); err != nil {
					return err
				}
				if _, err := tr.bind(4, any4, tr.lo, model.Options{}); err != nil {
					return err
				}
				return tr.deliveries()
			})
		})
	}
	return out
}

// nth runs scenario i: a script while there are some, then random ones.
func (a agreement) nth(i int, rng *rand.Rand, st *stats) error {
	lo, hi := a.window(i)
	if scripts := a.scripts(); i < len(scripts) {
		tr := a.newTrial(rng, lo, hi, st)
		tr.scripted = true
		return tr.end(scripts[i](tr))
	}
	return a.scenario(rng, lo, hi, st)
}

// scenario runs one random scenario.
func (a agreement) scenario(rng *rand.Rand, lo, hi uint16, st *stats) error {
	tr := a.newTrial(rng, lo, hi, st)
	return tr.end(tr.random(rng))
}

func (tr *trial) random(rng *rand.Rand) error {
	for range 2 + rng.IntN(8) {
		live := tr.live()
		if i := rng.IntN(len(live) + 1); i < len(live) && (!live[i].m.Listening || tr.a.udp) && !live[i].m.Connected && rng.IntN(2) == 0 {
			var err error
			switch {
			case tr.a.connect && rng.IntN(2) == 0 && !live[i].m.Mapped:
				err = tr.connect(live[i])
			case !tr.a.udp:
				err = tr.listen(live[i])
			}
			if err != nil {
				return err
			}
			continue
		}
		if len(live) > 0 && rng.IntN(5) == 0 {
			tr.close(live[rng.IntN(len(live))])
			continue
		}
		fam := model.Family(4)
		addr := addrs4[rng.IntN(2)]
		if rng.IntN(2) == 0 {
			fam, addr = 6, addrs6[rng.IntN(len(addrs6))]
		}
		o := model.Options{
			V6Only:      fam == 6 && rng.IntN(2) == 0,
			ReuseAddr:   rng.IntN(3) == 0,
			ReusePort:   rng.IntN(4) == 0,
			ReusePortLB: tr.a.lb && rng.IntN(5) == 0,
		}
		port := uint16(0)
		if rng.IntN(3) != 0 {
			port = tr.lo + uint16(rng.IntN(int(tr.hi-tr.lo)+1))
		}
		p, err := tr.bind(fam, addr, port, o)
		if err != nil {
			return err
		}
		if p != nil && !tr.a.udp && rng.IntN(4) != 0 {
			if err := tr.listen(p); err != nil {
				return err
			}
		}
	}
	return tr.deliveries()
}

// connectAnchor connects the bound socket fd to a listener of its own
// family on anchorPort+i, which it makes, and returns the accepted end.
func connectAnchor(l layer, fd int, m *model.Socket, i int, anchors *[]int, udp bool) (int, error) {
	dst := netip.AddrPortFrom(anchorHost(m.Family), uint16(anchorPort+i))
	if udp {
		// No listener: the index only keeps the 4-tuples apart.
		*anchors = append(*anchors, -1)
		return -1, l.connect(fd, dst)
	}
	ln, err := l.open(m.Family, model.Options{V6Only: true, ReuseAddr: true}, false, nil, 0)
	if err != nil {
		return -1, err
	}
	*anchors = append(*anchors, ln)
	if _, err := l.bind(ln, dst); err != nil {
		return -1, fmt.Errorf("anchor %v: %w", dst, err)
	}
	if err := l.listen(ln); err != nil {
		return -1, err
	}
	if err := l.connect(fd, dst); err != nil {
		return -1, err
	}
	peer, err := l.accept(ln)
	if err != nil {
		return -1, fmt.Errorf("anchor accept: %w", err)
	}
	return peer, nil
}

func anchorHost(f model.Family) netip.Addr {
	if f == 6 {
		return netip.IPv6Loopback()
	}
	return netip.MustParseAddr("127.0.0.1")
}

// hostLayer is the host kernel's socket layer.
type hostLayer struct{}

func (hostLayer) open(fam model.Family, o model.Options, udp bool, other *maker, uid int) (int, error) {
	af, typ := unix.AF_INET, unix.SOCK_STREAM
	if fam == 6 {
		af = unix.AF_INET6
	}
	if udp {
		typ = unix.SOCK_DGRAM
	}
	var fd int
	var err error
	if uid != 0 {
		fd, err = other.socket(af, typ)
	} else {
		fd, err = unix.Socket(af, typ, 0)
	}
	if err != nil {
		return -1, err
	}
	unix.CloseOnExec(fd)
	set := func(level, opt int, on bool) {
		if err == nil && (on || opt != soReusePortLB) {
			v := 0
			if on {
				v = 1
			}
			err = unix.SetsockoptInt(fd, level, opt, v)
		}
	}
	if fam == 6 {
		set(unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, o.V6Only)
	}
	set(unix.SOL_SOCKET, unix.SO_REUSEADDR, o.ReuseAddr)
	set(unix.SOL_SOCKET, unix.SO_REUSEPORT, o.ReusePort)
	set(unix.SOL_SOCKET, soReusePortLB, o.ReusePortLB)
	if err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

func sockaddr(a netip.AddrPort) unix.Sockaddr {
	if a.Addr().Is4() {
		return &unix.SockaddrInet4{Port: int(a.Port()), Addr: a.Addr().As4()}
	}
	return &unix.SockaddrInet6{Port: int(a.Port()), Addr: a.Addr().As16()}
}

func (hostLayer) bind(fd int, a netip.AddrPort) (uint16, error) {
	if err := unix.Bind(fd, sockaddr(a)); err != nil {
		return 0, err
	}
	got, err := unix.Getsockname(fd)
	if err != nil {
		return 0, err
	}
	switch got := got.(type) {
	case *unix.SockaddrInet4:
		return uint16(got.Port), nil
	case *unix.SockaddrInet6:
		return uint16(got.Port), nil
	}
	return 0, errors.New("odd sockaddr")
}

func (hostLayer) listen(fd int) error                      { return unix.Listen(fd, 16) }
func (hostLayer) close(fd int)                             { unix.Close(fd) }
func (hostLayer) connect(fd int, dst netip.AddrPort) error { return unix.Connect(fd, sockaddr(dst)) }

func (hostLayer) accept(fd int) (int, error) {
	nfd, _, err := unix.Accept(fd)
	return nfd, err
}

func (hostLayer) readable(fd int) bool {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	n, _ := unix.Poll(fds, 0)
	return n == 1 && fds[0].Revents&unix.POLLIN != 0
}

func (hostLayer) dialFrom(src, dst netip.AddrPort) (done func(), refused bool, err error) {
	fam := unix.AF_INET
	if dst.Addr().Is6() {
		fam = unix.AF_INET6
	}
	c, err := unix.Socket(fam, unix.SOCK_STREAM, 0)
	if err != nil {
		return nil, false, err
	}
	// Reset on close: no TIME_WAIT keeps the client's port.
	unix.SetsockoptInt(c, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	unix.SetsockoptLinger(c, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	done = func() { unix.Close(c) }
	if err := unix.Bind(c, sockaddr(src)); err != nil {
		done()
		return nil, false, fmt.Errorf("client bind: %w", err)
	}
	return done, unix.Connect(c, sockaddr(dst)) != nil, nil
}

func (hostLayer) sendFrom(src, dst netip.AddrPort) error {
	fam := unix.AF_INET
	if dst.Addr().Is6() {
		fam = unix.AF_INET6
	}
	c, err := unix.Socket(fam, unix.SOCK_DGRAM, 0)
	if err != nil {
		return err
	}
	defer unix.Close(c)
	unix.SetsockoptInt(c, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	if err := unix.Bind(c, sockaddr(src)); err != nil {
		return fmt.Errorf("client bind: %w", err)
	}
	unix.Sendto(c, []byte("x"), 0, sockaddr(dst))
	return nil
}

func (hostLayer) recv(fd int) error {
	buf := make([]byte, 8)
	_, _, err := unix.Recvfrom(fd, buf, unix.MSG_DONTWAIT)
	return err
}

// acceptor connects to dst and returns the listener that got the
// connection (nil if none did), or that it was refused. The client's port,
// outside the range under test, is reset on close: no TIME_WAIT and no
// ephemeral port taken from the range.
func acceptor(l layer, socks []*pair, dst netip.AddrPort) (got *pair, refused bool, err error) {
	done, refused, err := l.dialFrom(netip.AddrPortFrom(dst.Addr(), clientPort), dst)
	if err != nil {
		return nil, false, err
	}
	// The client stays open until its connection is accepted: its reset
	// would take the connection off the listener's queue.
	defer done()
	if refused {
		return nil, true, nil
	}
	for _, p := range socks {
		if p.fd < 0 || !p.m.Listening || !l.readable(p.fd) {
			continue
		}
		if nfd, err := l.accept(p.fd); err == nil {
			l.close(nfd)
			return p, false, nil
		}
	}
	return nil, false, nil
}

// judgeConn compares a connection to dst with a model: it must have
// reached a listener the model delivers to, or been refused where the
// model delivers to no socket, or to one that is not listening.
func judgeConn(k *model.Kernel, s modelOf, dst netip.AddrPort, got *pair, refused bool) error {
	want := k.Deliver(dst)
	listening := false
	for _, w := range want {
		listening = listening || w.Listening
	}
	switch {
	case refused && listening:
		return fmt.Errorf("connect %v refused, model delivers to %v", dst, want)
	case refused:
		return nil
	case !listening:
		return fmt.Errorf("connect %v succeeded, model delivers to %v", dst, want)
	case got == nil:
		return fmt.Errorf("connect %v: no listener has the connection", dst)
	}
	for _, w := range want {
		if w == s(got) {
			return nil
		}
	}
	return fmt.Errorf("connect %v reached %v, model delivers to %v", dst, s(got), want)
}

// receiver sends a datagram to dst and returns the sockets that received
// it.
func receiver(l layer, socks []*pair, dst netip.AddrPort) ([]*pair, error) {
	if err := l.sendFrom(netip.AddrPortFrom(dst.Addr(), clientPort), dst); err != nil {
		return nil, err
	}
	var got []*pair
	for _, p := range socks {
		if p.fd >= 0 && l.readable(p.fd) && l.recv(p.fd) == nil {
			got = append(got, p)
		}
	}
	return got, nil
}

// judgeDatagram compares the receivers of a datagram to dst with a model:
// one socket the model delivers to, or none where the model has none.
func judgeDatagram(k *model.Kernel, s modelOf, dst netip.AddrPort, got []*pair) error {
	want := k.Deliver(dst)
	switch {
	case len(got) == 0 && len(want) == 0:
		return nil
	case len(got) == 0:
		return fmt.Errorf("datagram to %v: nobody received it, model delivers to %v", dst, want)
	case len(got) > 1:
		return fmt.Errorf("datagram to %v: received by %d sockets", dst, len(got))
	}
	for _, w := range want {
		if w == s(got[0]) {
			return nil
		}
	}
	return fmt.Errorf("datagram to %v reached %v, model delivers to %v", dst, s(got[0]), want)
}

func contains(ports []uint16, p uint16) bool {
	for _, q := range ports {
		if q == p {
			return true
		}
	}
	return false
}

func sameErr(a, b error) bool {
	if a == nil || b == nil {
		return a == b
	}
	var ea, eb unix.Errno
	return errors.As(a, &ea) && errors.As(b, &eb) && ea == eb
}
