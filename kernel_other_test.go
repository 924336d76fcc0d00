//go:build unix && !linux && !freebsd && !darwin

package dualstack_test

import (
	"os"
	"runtime"
	"testing"

	"github.com/dualstack-go/dualstack/internal/vm/guest"
)

// ownKernel skips the test, or fails it under DUALSTACK_CI: no network
// stack of its own can be had on this OS yet.
func ownKernel(t testing.TB) {
	t.Helper()
	if os.Getenv(guest.RequiredEnv) != "" {
		t.Fatalf("no private network stack on %s (%s is set)", runtime.GOOS, guest.RequiredEnv)
	}
	t.Skipf("no private network stack on %s", runtime.GOOS)
}

func ownPortRange(t testing.TB, _, _ int) { ownKernel(t) }

const soReusePortLB = 0

func noResetLimit(testing.TB) {}

// guardedOS reports whether listeners here hold guard sockets, so that the
// scenarios' controls without them must show later binders taking
// traffic.
const guardedOS = false

// slowKernel reports whether the tests run on an emulated machine, where
// the longest scenarios run fewer times.
const slowKernel = false

func ownV6OnlyDefault(t testing.TB, _ int) { ownKernel(t) }
