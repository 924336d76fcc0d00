package guest

import "testing"

// Set sets an integer sysctl for the rest of the test and restores it when
// the test ends. It calls Own first.
func Set(tb testing.TB, name string, value int) {
	tb.Helper()
	Own(tb)
	old, err := SetSysctlInt(name, value)
	if err != nil {
		tb.Fatalf("set %s=%d: %v", name, value, err)
	}
	tb.Cleanup(func() {
		if _, err := SetSysctlInt(name, old); err != nil {
			tb.Errorf("restore %s=%d: %v", name, old, err)
		}
	})
}

// PortRange narrows the ephemeral port range to lo..hi for the rest of the
// test: net.inet.ip.portrange.first and .last, which IPv6 shares on
// FreeBSD.
func PortRange(tb testing.TB, lo, hi int) {
	tb.Helper()
	if hi <= lo {
		// Seen: bind(2) of port 0 then panics FreeBSD 15.1 with an integer
		// divide fault in in_pcb_lport_dest, whose random start is taken
		// modulo last - first.
		tb.Fatalf("guest.PortRange(%d, %d): a range of one port crashes the FreeBSD kernel; ask for two or more", lo, hi)
	}
	Set(tb, "net.inet.ip.portrange.first", lo)
	Set(tb, "net.inet.ip.portrange.last", hi)
}

// NoResetLimit lifts the kernel's limit of ICMP errors and TCP resets a
// second (net.inet.icmp.icmplim) for the rest of the test, for tests that
// connect to closed ports many times: past the limit a connection is not
// refused but left to time out.
func NoResetLimit(tb testing.TB) {
	tb.Helper()
	Set(tb, "net.inet.icmp.icmplim", 0)
}
