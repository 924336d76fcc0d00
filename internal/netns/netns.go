//go:build linux

// Package netns lets a test run in a private network namespace, where it
// may change sysctls such as net.ipv6.bindv6only, disable_ipv6 and
// ip_local_port_range without touching the host.
//
// Enter moves the calling goroutine's thread into a new namespace and keeps
// the goroutine locked to it, so that the thread is discarded when the test
// ends. Only sockets created on that goroutine live in the namespace:
// everything that opens a socket (Listen, Dial) must run on it, never in a
// goroutine it starts or in a subtest. Goroutines may still use sockets
// that were created there.
package netns

import (
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// RequiredEnv is the environment variable that makes a test fail, not
// skip, where namespaces cannot be made; .ci/run sets it.
const RequiredEnv = "DUALSTACK_CI"

// Sysctl is one setting under /proc/sys, such as
// {"net/ipv6/bindv6only", "1"}.
type Sysctl struct{ Key, Value string }

// Common settings.
var (
	BindV6Only  = []Sysctl{{"net/ipv6/bindv6only", "1"}}
	DisableIPv6 = []Sysctl{
		{"net/ipv6/conf/all/disable_ipv6", "1"},
		{"net/ipv6/conf/default/disable_ipv6", "1"},
		{"net/ipv6/conf/lo/disable_ipv6", "1"},
	}
)

// PortRange returns the setting that limits ephemeral ports to lo..hi.
func PortRange(lo, hi int) Sysctl {
	return Sysctl{"net/ipv4/ip_local_port_range", strconv.Itoa(lo) + " " + strconv.Itoa(hi)}
}

// Enter runs the rest of the calling test in a new network namespace with
// the loopback interface up and the given sysctls set. Where namespaces
// cannot be made it skips the test, or fails it if DUALSTACK_CI is set.
func Enter(tb testing.TB, sysctls ...Sysctl) {
	tb.Helper()
	// Never unlocked: the thread leaves the host's namespace for good and
	// the runtime discards it when the goroutine ends.
	runtime.LockOSThread()
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		Unavailable(tb, "network namespaces: unshare(CLONE_NEWNET): %v", err)
	}
	for _, s := range sysctls {
		Set(tb, s)
	}
	if err := loopbackUp(); err != nil {
		tb.Fatalf("netns: bring lo up: %v", err)
	}
}

// Unavailable skips the test because a required environment is missing, or
// fails it when DUALSTACK_CI is set.
func Unavailable(tb testing.TB, format string, args ...any) {
	tb.Helper()
	if os.Getenv(RequiredEnv) != "" {
		tb.Fatalf("required environment missing ("+RequiredEnv+" is set): "+format, args...)
	}
	tb.Skipf("environment missing: "+format, args...)
}

// Read reads a setting of the calling thread's namespace.
func Read(key string) (string, error) {
	b, err := os.ReadFile(filepath.Join("/proc/sys", key))
	if err != nil {
		return "", err
	}
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	return string(b), nil
}

func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return os.NewSyscallError("socket", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return os.NewSyscallError("ioctl SIOCGIFFLAGS", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return os.NewSyscallError("ioctl SIOCSIFFLAGS", err)
	}
	return nil
}

// Set changes a setting of the namespace that the calling test entered.
func Set(tb testing.TB, s Sysctl) {
	tb.Helper()
	if err := os.WriteFile(filepath.Join("/proc/sys", s.Key), []byte(s.Value), 0o644); err != nil {
		tb.Fatalf("netns: set %s: %v", s.Key, err)
	}
}

// RemoveIPv4Loopback takes 127.0.0.1 off the loopback interface of the
// namespace that the calling test entered: a host with IPv6 loopback only.
func RemoveIPv4Loopback(tb testing.TB) {
	tb.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		tb.Fatalf("netns: socket: %v", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		tb.Fatal(err)
	}
	// Setting the address 0.0.0.0 deletes it (devinet_ioctl).
	if err := ifr.SetInet4Addr([]byte{0, 0, 0, 0}); err != nil {
		tb.Fatal(err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFADDR, ifr); err != nil {
		tb.Fatalf("netns: remove 127.0.0.1 from lo: %v", err)
	}
}
