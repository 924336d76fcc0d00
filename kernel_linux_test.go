package dualstack_test

import (
	"strconv"
	"testing"

	"github.com/dualstack-go/dualstack/internal/netns"
)

// ownKernel gives the rest of the test a network stack of its own, whose
// settings it may change: on Linux a private network namespace, entered by
// the calling goroutine's thread. Only sockets made on that goroutine live
// there; see package netns.
func ownKernel(t testing.TB) { netns.Enter(t) }

// ownPortRange narrows the ephemeral port range of the test's own stack.
func ownPortRange(t testing.TB, lo, hi int) { netns.Set(t, netns.PortRange(lo, hi)) }

// soReusePortLB is 0: Linux has no SO_REUSEPORT_LB.
const soReusePortLB = 0

// noResetLimit does nothing: Linux does not limit resets to closed ports.
func noResetLimit(testing.TB) {}

// guardedOS reports whether listeners here hold guard sockets, so that the
// scenarios' controls without them must show later binders taking
// traffic.
const guardedOS = false

// slowKernel reports whether the tests run on an emulated machine, where
// the longest scenarios run fewer times.
const slowKernel = false

// ownV6OnlyDefault sets the default of IPV6_V6ONLY for new sockets of the
// test's own stack (net.ipv6.bindv6only).
func ownV6OnlyDefault(t testing.TB, v int) {
	netns.Set(t, netns.Sysctl{Key: "net/ipv6/bindv6only", Value: strconv.Itoa(v)})
}
