package dualstack_test

import (
	"testing"

	"github.com/dualstack-go/dualstack/internal/vm/guest"
)

// ownKernel gives the rest of the test a network stack of its own, whose
// settings it may change: on FreeBSD the whole kernel of the harness's VM,
// where this binary is the only program. Such a test must not run in
// parallel with others.
func ownKernel(t testing.TB) { guest.Own(t) }

// ownPortRange narrows the ephemeral port range of the test's own stack
// until the test ends.
func ownPortRange(t testing.TB, lo, hi int) { guest.PortRange(t, lo, hi) }
