// Package guest is the side of the VM harness (package vm) that tests see.
// A test binary that the harness boots runs as the only program on a
// kernel of its own, so tests may change what would need a private network
// namespace on Linux: the ephemeral port range, IPV6_V6ONLY's default and
// so on. They ask for it here, and never learn how the VM was booted.
package guest

import (
	"os"
	"testing"
)

// Env is the environment variable that the VM's init sets for the test
// binary: the name of the kernel it runs on, such as "freebsd".
const Env = "DUALSTACK_VM"

// OwnEnv is the environment variable that lets tests change the kernel's
// settings outside the harness's VM: set it to 1 on a disposable machine
// (a FreeBSD VM or jail of your own) to run the same tests there.
const OwnEnv = "DUALSTACK_OWN_KERNEL"

// RequiredEnv makes a missing environment a failure instead of a skip; CI
// sets it.
const RequiredEnv = "DUALSTACK_CI"

// Kernel returns the name of the harness VM's kernel this process runs on,
// or "" outside such a VM.
func Kernel() string { return os.Getenv(Env) }

// Own skips the test unless the kernel is the test's to change: inside the
// harness's VM, or where OwnEnv is set. Under RequiredEnv it fails
// instead of skipping.
func Own(tb testing.TB) {
	tb.Helper()
	if Kernel() != "" || os.Getenv(OwnEnv) == "1" {
		return
	}
	if os.Getenv(RequiredEnv) != "" {
		tb.Fatalf("this test changes kernel settings and runs only in the harness's VM or with %s=1 (%s is set)", OwnEnv, RequiredEnv)
	}
	tb.Skipf("this test changes kernel settings: it runs in the harness's VM (go run ./internal/vm/cmd/vmtest) or with %s=1", OwnEnv)
}
