//go:build rump && linux && cgo

package model_test

// The NetBSD model against NetBSD's own network stack, a rump kernel in
// this process (internal/rump):
//
//	go run ./internal/rump/cmd/rumptest ./internal/model -- -test.run NetBSD -test.v

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"syscall"
	"testing"

	"github.com/dualstack-go/dualstack/internal/model"
	"github.com/dualstack-go/dualstack/internal/rump"
	"github.com/stretchr/testify/require"
)

// rumpLayer is the rump stack's socket layer. It has one user: rump's.
type rumpLayer struct{}

func (rumpLayer) open(fam model.Family, o model.Options, udp bool, _ *maker, uid int) (int, error) {
	if uid != 0 || o.ReusePortLB || o.Exclusive {
		return -1, errors.New("rump: no second user, SO_REUSEPORT_LB or SO_EXCLUSIVEADDRUSE")
	}
	fd, err := rump.Socket(int(fam), udp)
	if err != nil {
		return -1, err
	}
	if fam == 6 {
		err = rump.SetV6Only(fd, o.V6Only)
	}
	if err == nil {
		err = rump.SetReuseAddr(fd, o.ReuseAddr)
	}
	if err == nil {
		err = rump.SetReusePort(fd, o.ReusePort)
	}
	if err != nil {
		rump.Close(fd)
		return -1, err
	}
	return fd, nil
}

func (rumpLayer) bind(fd int, a netip.AddrPort) (uint16, error) {
	if err := rump.Bind(fd, a); err != nil {
		return 0, err
	}
	got, err := rump.Name(fd)
	return got.Port(), err
}

func (rumpLayer) listen(fd int) error { return rump.Listen(fd, 16) }
func (rumpLayer) close(fd int)        { rump.Close(fd) }

func (rumpLayer) connect(fd int, dst netip.AddrPort) error { return rump.ConnectWait(fd, dst, 2000) }

func (rumpLayer) accept(fd int) (int, error) {
	nfd, _, err := rump.Accept(fd)
	return nfd, err
}

func (rumpLayer) readable(fd int) bool {
	ready, err := rump.Readable([]int{fd}, 0)
	return err == nil && ready[0]
}

// settle returns once the rump stack has handled what this thread sent
// over lo0 in family fam: the stack hands a packet to a software interrupt
// and returns, so a datagram or the last ACK of a handshake may not have
// arrived yet. A datagram of the same family sent after them, to a socket
// of ours, arrives after them.
func settle(fam int) error {
	markers.once.Do(func() {
		for i, a := range []string{"127.0.0.1", "::1"} {
			fd, err := rump.Socket(4+2*i, true)
			if err == nil {
				err = rump.Bind(fd, netip.AddrPortFrom(netip.MustParseAddr(a), markerPort))
			}
			markers.fd[i], markers.err = fd, errors.Join(markers.err, err)
		}
	})
	if markers.err != nil {
		return markers.err
	}
	fd, a := markers.fd[0], netip.MustParseAddr("127.0.0.1")
	if fam == 6 {
		fd, a = markers.fd[1], netip.MustParseAddr("::1")
	}
	if err := rump.SendTo(fd, []byte("m"), netip.AddrPortFrom(a, markerPort)); err != nil {
		return err
	}
	if ready, err := rump.Readable([]int{fd}, 2000); err != nil || !ready[0] {
		return fmt.Errorf("settle: marker datagram not back: %v", err)
	}
	_, _, err := rump.RecvFrom(fd, make([]byte, 8))
	return err
}

// markerPort is settle's port, outside every range under test.
const markerPort = clientPort + 1

var markers struct {
	once sync.Once
	fd   [2]int
	err  error
}

func (rumpLayer) dialFrom(src, dst netip.AddrPort) (func(), bool, error) {
	fam := 4
	if dst.Addr().Is6() {
		fam = 6
	}
	c, err := rump.Socket(fam, false)
	if err != nil {
		return nil, false, err
	}
	done := func() { rump.Close(c) }
	rump.SetReuseAddr(c, true)
	rump.SetLinger0(c)
	if err := rump.Bind(c, src); err != nil {
		done()
		return nil, false, fmt.Errorf("client bind: %w", err)
	}
	err = rump.ConnectWait(c, dst, 150)
	switch {
	case err == nil:
		if err := settle(fam); err != nil {
			done()
			return nil, false, err
		}
		return done, false, nil
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		// NetBSD drops a SYN for a socket bound but not listening
		// (tcp_input: a pcb in CLOSED state), where FreeBSD resets.
		errors.Is(err, syscall.ETIMEDOUT):
		return done, true, nil
	}
	done()
	return nil, false, err
}

func (rumpLayer) sendFrom(src, dst netip.AddrPort) error {
	fam := 4
	if dst.Addr().Is6() {
		fam = 6
	}
	c, err := rump.Socket(fam, true)
	if err != nil {
		return err
	}
	defer rump.Close(c)
	rump.SetReuseAddr(c, true)
	if err := rump.Bind(c, src); err != nil {
		return fmt.Errorf("client bind: %w", err)
	}
	if err := rump.SendTo(c, []byte("x"), dst); err != nil {
		return err
	}
	return settle(fam)
}

func (rumpLayer) recv(fd int) error {
	_, _, err := rump.RecvFrom(fd, make([]byte, 8))
	return err
}

// netbsdAgreement narrows the rump stack's ranges for each scenario to
// the next width ports from base up, as freebsdAgreement does.
func netbsdAgreement(t *testing.T, base, span, width int) agreement {
	require.NoError(t, rump.Init())
	next := 0
	set := func(lo, hi int) {
		// NetBSD keeps min < max at every step.
		for _, mibs := range [][2][]int{{rump.MIBAnonPortMin, rump.MIBAnonPortMax}, {rump.MIB6AnonPortMin, rump.MIB6AnonPortMax}} {
			min, err := rump.SysctlValue(mibs[0])
			require.NoError(t, err)
			order := [][]int{mibs[1], mibs[0]}
			if hi <= min {
				order = [][]int{mibs[0], mibs[1]}
			}
			for _, mib := range order {
				v := hi
				if &mib[0] == &mibs[0][0] {
					v = lo
				}
				_, err := rump.Sysctl(mib, v)
				require.NoError(t, err)
			}
		}
	}
	return agreement{os: model.NetBSD, connect: true, net: rumpLayer{}, window: func(int) (uint16, uint16) {
		lo := base + next%(span/width)*width
		next++
		set(lo, lo+width-1)
		return uint16(lo), uint16(lo + width - 1)
	}}
}

// TestNetBSDModelAgreesWithKernel runs the agreement scenarios on the rump
// stack and the NetBSD model, TCP and UDP.
func TestNetBSDModelAgreesWithKernel(t *testing.T) {
	scenarios := 500
	if testing.Short() {
		scenarios = 100
	}
	total, disagreements := 0, 0
	for i, udp := range []bool{false, true} {
		a := netbsdAgreement(t, 20000+i*8000, 8000, 8)
		a.udp = udp
		d, st := a.run(t, scenarios)
		t.Logf("udp %v: %d scenarios: %v; %d disagreements", udp, scenarios, st, d)
		total += scenarios
		disagreements += d
	}
	fmt.Printf("FIGURE netbsd model agreement: %d scenarios, %d disagreements\n", total, disagreements)
	require.Zero(t, disagreements)
}

// TestNetBSDModelPairs binds every pair of sockets (pairs) on the rump
// stack and the NetBSD model.
func TestNetBSDModelPairs(t *testing.T) {
	require.NoError(t, rump.Init())
	port := uint16(59999)
	n, d := pairs(t, model.NetBSD, rumpLayer{}, false, nil, func() uint16 { port++; return port })
	pairsFigure("netbsd", n, d)
}

// TestNetBSDRulesMatter: with any one rule of the NetBSD model switched
// off, the model disagrees with the stack.
func TestNetBSDRulesMatter(t *testing.T) {
	a := netbsdAgreement(t, 40000, 17000, 2)
	a.rulesMatter(t, model.Rules(model.NetBSD), 2000)
}
