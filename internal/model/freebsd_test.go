//go:build freebsd

package model_test

import (
	"fmt"
	"testing"

	"github.com/dualstack-go/dualstack/internal/model"
	"github.com/dualstack-go/dualstack/internal/vm/guest"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

const soReusePortLB = unix.SO_REUSEPORT_LB

// TestFreeBSDModelAgreesWithKernel runs the agreement scenarios
// (agreement) on the FreeBSD kernel of the harness's VM and on the FreeBSD
// model: binds with every option (SO_REUSEPORT_LB included), listens,
// connections, closes that leave TIME_WAIT sockets, and deliveries. Each
// scenario has a range of ephemeral ports of its own, so that no TIME_WAIT
// socket outlives it into the next, and local TIME_WAIT lasts long enough
// (net.inet.tcp.msl_local) not to end within one.
func TestFreeBSDModelAgreesWithKernel(t *testing.T) {
	scenarios := 1000
	if testing.Short() {
		scenarios = 200
	}
	const base = 20000
	total, disagreements := 0, 0
	other := startMaker(t)
	for i, udp := range []bool{false, true} {
		a := freebsdAgreement(t, base+i*8000, 8000, 8)
		a.udp, a.other = udp, other
		d, st := a.run(t, scenarios)
		t.Logf("udp %v: %d scenarios: %v; %d disagreements", udp, scenarios, st, d)
		total += scenarios
		disagreements += d
	}
	fmt.Printf("FIGURE freebsd model agreement: %d scenarios, %d disagreements\n", total, disagreements)
	require.Zero(t, disagreements)
}

// freebsdAgreement prepares the kernel for the agreement scenarios: each
// scenario takes the next width ports of the span ports from base up, the
// same agreement's scenarios in turn however many runs it makes, so that
// no TIME_WAIT socket of one scenario meets another.
func freebsdAgreement(t *testing.T, base, span, width int) agreement {
	if width < 2 {
		t.Fatal("one port a scenario would crash the kernel (guest.PortRange)")
	}
	guest.NoResetLimit(t)
	guest.Set(t, "net.inet.tcp.msl_local", 5000)
	guest.PortRange(t, base, base+width-1)
	next := 0
	return agreement{os: model.FreeBSD, lb: true, connect: true, window: func(int) (uint16, uint16) {
		lo := base + next%(span/width)*width
		next++
		// Widening first keeps first <= last.
		must(guest.SetSysctlInt("net.inet.ip.portrange.last", lo+width-1))
		must(guest.SetSysctlInt("net.inet.ip.portrange.first", lo))
		return uint16(lo), uint16(lo + width - 1)
	}}
}

// TestFreeBSDRulesMatter: with any one rule of the FreeBSD model switched
// off, the model disagrees with the kernel. Scenarios get two ports each,
// so that they often fill them, and fresh ones across all the rules' runs
// (8,500 scenarios before the first come back).
//
// The FreeBSD tests of this package and of the root one, which run in one
// boot, each keep to ports of their own: a TCP socket with SO_REUSEPORT_LB
// closed before it listened leaves its group behind for good, and the
// group then changes who takes the port's connections (seen).
func TestFreeBSDRulesMatter(t *testing.T) {
	a := freebsdAgreement(t, 43000, 17000, 2)
	a.other = startMaker(t)
	a.rulesMatter(t, model.Rules(model.FreeBSD), 2000)
}

func must(_ int, err error) {
	if err != nil {
		panic(err)
	}
}

// TestFreeBSDModelPairs binds every pair of sockets (pairs) on the FreeBSD
// kernel and model, on ports that no other test of the package uses.
func TestFreeBSDModelPairs(t *testing.T) {
	port := uint16(59999)
	n, d := pairs(t, model.FreeBSD, hostLayer{}, true, startMaker(t), func() uint16 { port++; return port })
	pairsFigure("freebsd", n, d)
}
