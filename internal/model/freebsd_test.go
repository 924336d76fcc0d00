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
	for i, udp := range []bool{false, true} {
		a := freebsdAgreement(t, base+i*8000, 8)
		a.udp = udp
		d, st := a.run(t, scenarios)
		t.Logf("udp %v: %d scenarios: %v; %d disagreements", udp, scenarios, st, d)
		total += scenarios
		disagreements += d
	}
	fmt.Printf("FIGURE freebsd model agreement: %d scenarios, %d disagreements\n", total, disagreements)
	require.Zero(t, disagreements)
}

// freebsdAgreement prepares the kernel for the agreement scenarios, from
// port base up, width ports a scenario.
func freebsdAgreement(t *testing.T, base, width int) agreement {
	guest.NoResetLimit(t)
	guest.Set(t, "net.inet.tcp.msl_local", 5000)
	guest.PortRange(t, base, base+width-1)
	return agreement{os: model.FreeBSD, lb: true, connect: true, window: func(i int) (uint16, uint16) {
		lo := base + (i%(8000/width))*width
		// Widening first keeps first <= last.
		must(guest.SetSysctlInt("net.inet.ip.portrange.last", lo+width-1))
		must(guest.SetSysctlInt("net.inet.ip.portrange.first", lo))
		return uint16(lo), uint16(lo + width - 1)
	}}
}

// TestFreeBSDRulesMatter: with any one rule of the FreeBSD model switched
// off, the model disagrees with the kernel. Each rule gets its own ports,
// so that no TIME_WAIT of one run meets the next, and scenarios get two
// ports each, so that they often fill them.
func TestFreeBSDRulesMatter(t *testing.T) {
	for i, r := range model.Rules(model.FreeBSD) {
		a := freebsdAgreement(t, 20000+(i%4)*10000, 2)
		a.rulesMatter(t, []model.Rule{r}, 2000)
	}
}

func must(_ int, err error) {
	if err != nil {
		panic(err)
	}
}
