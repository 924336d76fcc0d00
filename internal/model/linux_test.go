//go:build linux

package model_test

import (
	"testing"

	"github.com/dualstack-go/dualstack/internal/model"
	"github.com/dualstack-go/dualstack/internal/netns"
	"github.com/stretchr/testify/require"
)

// soReusePortLB is 0: Linux has no SO_REUSEPORT_LB.
const soReusePortLB = 0

// TestLinuxModelAgreesWithKernel runs the agreement scenarios (agreement)
// on the real kernel, in a private namespace, and on the Linux model.
func TestLinuxModelAgreesWithKernel(t *testing.T) {
	const lo, hi = 41000, 41007
	scenarios := 1000
	if testing.Short() {
		scenarios = 100
	}
	netns.Enter(t, netns.PortRange(lo, hi))
	other := startMaker(t)
	for _, udp := range []bool{false, true} {
		a := agreement{os: model.Linux, udp: udp, other: other, window: func(int) (uint16, uint16) { return lo, hi }}
		d, st := a.run(t, scenarios)
		t.Logf("udp %v: %d scenarios: %v; %d disagreements", udp, scenarios, st, d)
		require.Zero(t, d)
	}
}

// TestLinuxRulesMatter: with any one rule of the Linux model switched off,
// the model disagrees with the kernel. The range is two ports, so that
// scenarios often fill it: a model that lets the ephemeral search take
// more ports than the kernel does shows only when the kernel finds none.
func TestLinuxRulesMatter(t *testing.T) {
	const lo, hi = 41000, 41001
	netns.Enter(t, netns.PortRange(lo, hi))
	a := agreement{os: model.Linux, other: startMaker(t), window: func(int) (uint16, uint16) { return lo, hi }}
	a.rulesMatter(t, model.Rules(model.Linux), 6000)
}

// TestLinuxModelPairs binds every pair of sockets (pairs) on the Linux
// kernel, in a private namespace, and on the Linux model.
func TestLinuxModelPairs(t *testing.T) {
	netns.Enter(t)
	port := uint16(20000)
	n, d := pairs(t, model.Linux, hostLayer{}, false, startMaker(t), func() uint16 { port++; return port })
	pairsFigure("linux", n, d)
}
