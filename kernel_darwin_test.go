package dualstack_test

import (
	"os/exec"
	"strconv"
	"testing"

	"github.com/dualstack-go/dualstack/internal/vm/guest"
	"golang.org/x/sys/unix"
)

// ownKernel lets the rest of the test change the kernel's settings: on
// macOS only where DUALSTACK_OWN_KERNEL=1 says the machine is disposable
// (a CI runner), and as root.
func ownKernel(t testing.TB) { guest.Own(t) }

// ownPortRange narrows the ephemeral port range until the test ends.
func ownPortRange(t testing.TB, lo, hi int) {
	setSysctl(t, "net.inet.ip.portrange.first", lo)
	setSysctl(t, "net.inet.ip.portrange.last", hi)
}

// noResetLimit lifts the limit of resets and ICMP errors a second.
func noResetLimit(t testing.TB) { setSysctl(t, "net.inet.icmp.icmplim", 0) }

// setSysctl sets an integer sysctl with sysctl(8) and restores it when the
// test ends.
func setSysctl(t testing.TB, name string, v int) {
	t.Helper()
	guest.Own(t)
	old, err := unix.SysctlUint32(name)
	if err != nil {
		t.Fatalf("sysctl %s: %v", name, err)
	}
	set := func(v int) error {
		out, err := exec.Command("sysctl", "-w", name+"="+strconv.Itoa(v)).CombinedOutput()
		if err != nil {
			t.Logf("sysctl -w %s=%d: %s", name, v, out)
		}
		return err
	}
	if err := set(v); err != nil {
		t.Fatalf("set %s (as root?): %v", name, err)
	}
	t.Cleanup(func() { set(int(old)) })
}

// soReusePortLB is 0: macOS has no SO_REUSEPORT_LB.
const soReusePortLB = 0

// guardedOS reports whether listeners here hold guard sockets, so that the
// scenarios' controls without them must show later binders taking
// traffic.
const guardedOS = true

// slowKernel reports whether the tests run on an emulated machine.
const slowKernel = false

// ownV6OnlyDefault sets the default of IPV6_V6ONLY for new sockets
// (net.inet6.ip6.v6only) until the test ends.
func ownV6OnlyDefault(t testing.TB, v int) { setSysctl(t, "net.inet6.ip6.v6only", v) }
