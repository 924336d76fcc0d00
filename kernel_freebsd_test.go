package dualstack_test

import (
	"testing"

	"github.com/dualstack-go/dualstack/internal/vm/guest"
	"golang.org/x/sys/unix"
)

// ownKernel gives the rest of the test a network stack of its own, whose
// settings it may change: on FreeBSD the whole kernel of the harness's VM,
// where this binary is the only program. Such a test must not run in
// parallel with others.
func ownKernel(t testing.TB) { guest.Own(t) }

// ownPortRange narrows the ephemeral port range of the test's own stack
// until the test ends.
func ownPortRange(t testing.TB, lo, hi int) { guest.PortRange(t, lo, hi) }

const soReusePortLB = unix.SO_REUSEPORT_LB

// noResetLimit lifts the kernel's limit of resets a second for the rest of
// the test, which connects to closed ports often.
func noResetLimit(t testing.TB) { guest.NoResetLimit(t) }

// guardedOS reports whether listeners here hold guard sockets, so that the
// scenarios' controls without them must show later binders taking
// traffic.
const guardedOS = true

// slowKernel reports whether the tests run on an emulated machine, where
// the longest scenarios run fewer times: the harness's VM, under TCG.
var slowKernel = guest.Kernel() != ""

// ownV6OnlyDefault sets the default of IPV6_V6ONLY for new sockets
// (net.inet6.ip6.v6only) until the test ends.
func ownV6OnlyDefault(t testing.TB, v int) { guest.Set(t, "net.inet6.ip6.v6only", v) }
