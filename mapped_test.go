package dualstack_test

import (
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dualstack-go/dualstack"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestUnmapString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in, want string
	}{
		// IPv4-mapped addresses, in every spelling netip accepts.
		{"mapped", "::ffff:192.0.2.1", "192.0.2.1"},
		{"mapped upper case", "::FFFF:192.0.2.1", "192.0.2.1"},
		{"mapped hex tail", "::ffff:c000:201", "192.0.2.1"},
		{"mapped in full", "0:0:0:0:0:ffff:192.0.2.1", "192.0.2.1"},
		{"mapped with leading zeros", "0000:0000:0000:0000:0000:ffff:c000:0201", "192.0.2.1"},
		{"mapped loopback", "::ffff:127.0.0.1", "127.0.0.1"},
		{"mapped unspecified", "::ffff:0.0.0.0", "0.0.0.0"},
		// A zone cannot go with IPv4: dropped, as netip.Addr.Unmap does.
		{"mapped with zone", "::ffff:192.0.2.1%eth0", "192.0.2.1"},
		// Bracketed with a port: the port is kept.
		{"mapped with port", "[::ffff:192.0.2.1]:80", "192.0.2.1:80"},
		{"mapped with port 0", "[::ffff:192.0.2.1]:0", "192.0.2.1:0"},
		{"mapped with top port", "[::ffff:192.0.2.1]:65535", "192.0.2.1:65535"},
		// Not IPv4-mapped: unchanged, spelling included.
		{"IPv4", "192.0.2.1", "192.0.2.1"},
		{"IPv4 with port", "192.0.2.1:80", "192.0.2.1:80"},
		{"IPv6", "2001:db8::1", "2001:db8::1"},
		{"IPv6 upper case kept", "2001:DB8::1", "2001:DB8::1"},
		{"IPv6 with ffff elsewhere", "2001:db8::ffff:1", "2001:db8::ffff:1"},
		{"IPv6 with zone", "fe80::1%eth0", "fe80::1%eth0"},
		{"IPv6 with port", "[2001:db8::1]:443", "[2001:db8::1]:443"},
		{"SIIT ::ffff:0:a.b.c.d", "::ffff:0:192.0.2.1", "::ffff:0:192.0.2.1"},
		{"IPv4-compatible ::a.b.c.d", "::192.0.2.1", "::192.0.2.1"},
		{"NAT64 64:ff9b::/96", "64:ff9b::192.0.2.1", "64:ff9b::192.0.2.1"},
		{"all ones", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"},
		// Garbage and near misses come back as they are.
		{"empty", "", ""},
		{"word", "ffff", "ffff"},
		{"host name", "ffff.example.com", "ffff.example.com"},
		{"unbracketed mapped with port", "::ffff:192.0.2.1:80", "::ffff:192.0.2.1:80"},
		{"unclosed bracket", "[::ffff:192.0.2.1:80", "[::ffff:192.0.2.1:80"},
		{"brackets without port", "[::ffff:192.0.2.1]", "[::ffff:192.0.2.1]"},
		{"port out of range", "[::ffff:192.0.2.1]:65536", "[::ffff:192.0.2.1]:65536"},
		{"named port", "[::ffff:192.0.2.1]:http", "[::ffff:192.0.2.1]:http"},
		{"bad IPv4 tail", "::ffff:192.0.2.256", "::ffff:192.0.2.256"},
		{"surrounding space", " ::ffff:192.0.2.1", " ::ffff:192.0.2.1"},
		{"list", "::ffff:192.0.2.1, ::ffff:198.51.100.7", "::ffff:192.0.2.1, ::ffff:198.51.100.7"},
		{"log line", "client ::ffff:192.0.2.1 said hi", "client ::ffff:192.0.2.1 said hi"},
		{"invalid UTF-8", "\xff\xfe::ffff:1.2.3.4", "\xff\xfe::ffff:1.2.3.4"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := dualstack.UnmapString(tc.in)
			assert.Equal(t, tc.want, got)
			assert.Equal(t, got, dualstack.UnmapString(got), "idempotent")
		})
	}
}

func TestUnmapAddrPort(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in, want string
	}{
		// Mapped: the IPv4 form, the port kept.
		{"mapped", "[::ffff:192.0.2.1]:80", "192.0.2.1:80"},
		{"mapped hex", "[::ffff:c000:201]:8080", "192.0.2.1:8080"},
		// The rest unchanged, zones included.
		{"IPv4", "192.0.2.1:80", "192.0.2.1:80"},
		{"IPv6", "[2001:db8::1]:443", "[2001:db8::1]:443"},
		{"IPv6 with zone", "[fe80::1%eth0]:22", "[fe80::1%eth0]:22"},
		{"SIIT", "[::ffff:0:192.0.2.1]:1", "[::ffff:0:c000:201]:1"},
		{"IPv4-compatible", "[::192.0.2.1]:1", "[::c000:201]:1"},
		{"NAT64", "[64:ff9b::192.0.2.1]:1", "[64:ff9b::c000:201]:1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := dualstack.UnmapAddrPort(netip.MustParseAddrPort(tc.in))
			assert.Equal(t, tc.want, got.String())
			assert.Equal(t, got, dualstack.UnmapAddrPort(got), "idempotent")
		})
	}
	assert.Equal(t, netip.AddrPort{}, dualstack.UnmapAddrPort(netip.AddrPort{}), "the zero AddrPort")
}

func TestUnmap(t *testing.T) {
	t.Parallel()
	mapped := net.ParseIP("::ffff:192.0.2.1") // 16 bytes, IPv4-mapped
	require16(t, mapped)
	custom := customAddr("::ffff:192.0.2.1")
	tests := []struct {
		name string
		in   net.Addr
		want net.Addr
	}{
		// The three IP address types with a mapped IP: the 4-byte form.
		{"TCP", &net.TCPAddr{IP: mapped, Port: 80}, &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1).To4(), Port: 80}},
		{"UDP", &net.UDPAddr{IP: mapped, Port: 53}, &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1).To4(), Port: 53}},
		{"IP", &net.IPAddr{IP: mapped}, &net.IPAddr{IP: net.IPv4(192, 0, 2, 1).To4()}},
		{"TCP mapped with zone", &net.TCPAddr{IP: mapped, Port: 80, Zone: "eth0"}, &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1).To4(), Port: 80}},
		// Already IPv4, IPv6, or not an IP address: unchanged.
		{"TCP IPv4", &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1).To4(), Port: 80}, nil},
		{"TCP IPv6 with zone", &net.TCPAddr{IP: net.ParseIP("fe80::1"), Port: 22, Zone: "eth0"}, nil},
		{"TCP SIIT", &net.TCPAddr{IP: net.ParseIP("::ffff:0:192.0.2.1"), Port: 1}, nil},
		{"TCP NAT64", &net.TCPAddr{IP: net.ParseIP("64:ff9b::192.0.2.1"), Port: 1}, nil},
		{"TCP nil IP", &net.TCPAddr{Port: 1}, nil},
		{"TCP short IP", &net.TCPAddr{IP: net.IP{1, 2, 3}, Port: 1}, nil},
		{"typed nil TCP", (*net.TCPAddr)(nil), nil},
		{"typed nil UDP", (*net.UDPAddr)(nil), nil},
		{"typed nil IP", (*net.IPAddr)(nil), nil},
		{"Unix", &net.UnixAddr{Name: "/tmp/s", Net: "unix"}, nil},
		{"custom", custom, nil},
		{"nil", nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			want := tc.want
			if want == nil {
				want = tc.in
			}
			var got net.Addr
			assert.NotPanics(t, func() { got = dualstack.Unmap(tc.in) })
			assert.Equal(t, want, got)
			assert.Equal(t, got, dualstack.Unmap(got), "idempotent")
		})
	}

	// The input is never modified.
	in := &net.TCPAddr{IP: mapped, Port: 80}
	dualstack.Unmap(in)
	assert.Equal(t, "::ffff:192.0.2.1", netip.AddrFrom16([16]byte(in.IP)).String())
}

func require16(t *testing.T, ip net.IP) {
	t.Helper()
	if len(ip) != net.IPv6len {
		t.Fatalf("want a 16-byte IP, got %d bytes", len(ip))
	}
}

// customAddr is an IP address of a type the net package does not know:
// a proxy library's, say.
type customAddr string

func (a customAddr) Network() string { return "tcp" }
func (a customAddr) String() string  { return string(a) }

// otherAddr is an address of any network.
type otherAddr struct{ network, s string }

func (a otherAddr) Network() string { return a.network }
func (a otherAddr) String() string  { return a.s }

func TestAddrPortFrom(t *testing.T) {
	t.Parallel()
	mapped := net.ParseIP("::ffff:192.0.2.1")
	tests := []struct {
		name string
		in   net.Addr
		want string // "" for not ok
	}{
		// The net types, unmapped.
		{"TCP mapped", &net.TCPAddr{IP: mapped, Port: 80}, "192.0.2.1:80"},
		{"UDP mapped", &net.UDPAddr{IP: mapped, Port: 53}, "192.0.2.1:53"},
		{"IP mapped", &net.IPAddr{IP: mapped}, "192.0.2.1:0"},
		{"TCP IPv6 zone kept", &net.TCPAddr{IP: net.ParseIP("fe80::1"), Port: 22, Zone: "eth0"}, "[fe80::1%eth0]:22"},
		{"IP IPv6 zone kept", &net.IPAddr{IP: net.ParseIP("fe80::1"), Zone: "eth0"}, "[fe80::1%eth0]:0"},
		// Other types through their text.
		{"custom host:port", customAddr("[::ffff:192.0.2.1]:8080"), "192.0.2.1:8080"},
		{"custom bare IP", customAddr("::ffff:192.0.2.1"), "192.0.2.1:0"},
		{"raw IP network", otherAddr{"ip4:icmp", "192.0.2.1"}, "192.0.2.1:0"},
		// No IP address.
		{"TCP without IP", &net.TCPAddr{Port: 80}, ""},
		{"IP without IP", &net.IPAddr{}, ""},
		{"Unix", &net.UnixAddr{Name: "/tmp/s", Net: "unix"}, ""},
		{"Unix path that reads as an address", &net.UnixAddr{Name: "10.0.0.1:80", Net: "unix"}, ""},
		{"unixgram path", &net.UnixAddr{Name: "10.0.0.1:80", Net: "unixgram"}, ""},
		{"unknown network", otherAddr{"vsock", "10.0.0.1:80"}, ""},
		{"custom name", customAddr("example.com:80"), ""},
		{"typed nil TCP", (*net.TCPAddr)(nil), ""},
		{"typed nil UDP", (*net.UDPAddr)(nil), ""},
		{"typed nil IP", (*net.IPAddr)(nil), ""},
		{"nil", nil, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ap, ok := dualstack.AddrPortFrom(tc.in)
			if tc.want == "" {
				assert.False(t, ok)
				assert.Equal(t, netip.AddrPort{}, ap)
				return
			}
			assert.True(t, ok)
			assert.Equal(t, tc.want, ap.String())
		})
	}
}

// TestZeroAllocations: the netip paths, and UnmapString on text that needs
// no change, allocate nothing.
func TestZeroAllocations(t *testing.T) {
	mappedAP := netip.MustParseAddrPort("[::ffff:192.0.2.1]:80")
	plainAP := netip.MustParseAddrPort("[2001:db8::1]:443")
	tcp := &net.TCPAddr{IP: net.ParseIP("::ffff:192.0.2.1"), Port: 80}
	var sink netip.AddrPort
	assert.Zero(t, testing.AllocsPerRun(1000, func() { sink = dualstack.UnmapAddrPort(mappedAP) }), "UnmapAddrPort mapped")
	assert.Zero(t, testing.AllocsPerRun(1000, func() { sink = dualstack.UnmapAddrPort(plainAP) }), "UnmapAddrPort plain")
	assert.Zero(t, testing.AllocsPerRun(1000, func() { sink, _ = dualstack.AddrPortFrom(tcp) }), "AddrPortFrom *net.TCPAddr")
	_ = sink

	clean := []string{
		"192.0.2.1", "192.0.2.1:80", "2001:db8::1", "[2001:db8::1]:443", "fe80::1%eth0",
		"2001:db8::ffff:1", "::ffff:0:192.0.2.1", "[2001:db8::ffff]:1", "", "not an address",
		strings.Repeat("a long log line without addresses ", 20),
	}
	var out string
	for _, s := range clean {
		assert.Zero(t, testing.AllocsPerRun(1000, func() { out = dualstack.UnmapString(s) }), "UnmapString(%q)", s)
	}
	_ = out
}

// FuzzUnmapString checks, for any text: no panic; idempotence; the result
// is an IPv4 address (or IPv4 address and port) exactly when the input was
// an IPv4 or IPv4-mapped one; agreement with netip.Addr.Unmap; and text
// that is not a mapped address comes back byte for byte.
func FuzzUnmapString(f *testing.F) {
	for _, seed := range []string{
		"::ffff:192.0.2.1",         // mapped, dotted tail
		"::FFFF:c000:201",          // mapped, hex tail, upper case
		"0:0:0:0:0:ffff:1.2.3.4",   // mapped, written out
		"::ffff:1.2.3.4%eth0",      // mapped with a zone
		"[::ffff:192.0.2.1]:80",    // mapped with a port
		"[::ffff:192.0.2.1]:00080", // port with leading zeros
		"[::ffff:1.2.3.4%lo]:1",    // mapped, zone and port
		"::ffff:0:192.0.2.1",       // SIIT: not mapped
		"::192.0.2.1",              // IPv4-compatible: not mapped
		"64:ff9b::192.0.2.1",       // NAT64: not mapped
		"192.0.2.1",                // IPv4
		"192.0.2.1:80",             // IPv4 and port
		"2001:db8::ffff:1",         // IPv6 with ffff elsewhere
		"[fe80::1%eth0]:22",        // IPv6, zone, port
		"[::ffff:1.2.3.4]",         // brackets, no port
		"[::ffff:1.2.3.4]:65536",   // port out of range
		"ffff",                     // the marker alone
		"",                         // nothing
		"\xff\xff\xff\xff",         // not UTF-8
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out := dualstack.UnmapString(in)
		if again := dualstack.UnmapString(out); again != out {
			t.Fatalf("not idempotent: %q -> %q -> %q", in, out, again)
		}
		if isIPv4(out) != (isIPv4(in) || isMapped(in)) {
			t.Fatalf("%q -> %q: IPv4 out %v, IPv4 or mapped in %v", in, out, isIPv4(out), isIPv4(in) || isMapped(in))
		}
		if a, err := netip.ParseAddr(in); err == nil && a.Is4In6() {
			if want := a.Unmap().String(); out != want {
				t.Fatalf("%q -> %q, netip.Addr.Unmap gives %q", in, out, want)
			}
			return
		}
		if ap, err := netip.ParseAddrPort(in); err == nil && ap.Addr().Is4In6() && in[0] == '[' {
			want := netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String()
			if out != want {
				t.Fatalf("%q -> %q, netip gives %q", in, out, want)
			}
			return
		}
		if out != in {
			t.Fatalf("%q is not a mapped address, yet became %q", in, out)
		}
	})
}

func isIPv4(s string) bool {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Is4()
	}
	ap, err := netip.ParseAddrPort(s)
	return err == nil && ap.Addr().Is4()
}

func isMapped(s string) bool {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Is4In6()
	}
	ap, err := netip.ParseAddrPort(s)
	return err == nil && ap.Addr().Is4In6()
}

var (
	sinkAddr     netip.Addr
	sinkAddrPort netip.AddrPort
	sinkString   string
	sinkNetAddr  net.Addr
)

// BenchmarkUnmap compares the helpers with netip.Addr.Unmap, on mapped
// input and on input that needs no change.
func BenchmarkUnmap(b *testing.B) {
	mappedAddr := netip.MustParseAddr("::ffff:192.0.2.1")
	plainAddr := netip.MustParseAddr("2001:db8::1")
	mappedAP := netip.AddrPortFrom(mappedAddr, 80)
	plainAP := netip.AddrPortFrom(plainAddr, 80)
	mappedTCP := &net.TCPAddr{IP: net.ParseIP("::ffff:192.0.2.1"), Port: 80}
	plainTCP := &net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 80}
	cases := []struct {
		name string
		fn   func()
	}{
		{"netip.Addr.Unmap/mapped", func() { sinkAddr = mappedAddr.Unmap() }},
		{"netip.Addr.Unmap/clean", func() { sinkAddr = plainAddr.Unmap() }},
		{"UnmapAddrPort/mapped", func() { sinkAddrPort = dualstack.UnmapAddrPort(mappedAP) }},
		{"UnmapAddrPort/clean", func() { sinkAddrPort = dualstack.UnmapAddrPort(plainAP) }},
		{"UnmapString/mapped", func() { sinkString = dualstack.UnmapString("::ffff:192.0.2.1") }},
		{"UnmapString/clean-IPv4", func() { sinkString = dualstack.UnmapString("192.0.2.1") }},
		{"UnmapString/clean-IPv6", func() { sinkString = dualstack.UnmapString("2001:db8::1") }},
		{"UnmapString/clean-hostport", func() { sinkString = dualstack.UnmapString("[2001:db8::1]:443") }},
		{"Unmap/mapped", func() { sinkNetAddr = dualstack.Unmap(mappedTCP) }},
		{"Unmap/clean", func() { sinkNetAddr = dualstack.Unmap(plainTCP) }},
		{"AddrPortFrom/mapped", func() { sinkAddrPort, _ = dualstack.AddrPortFrom(mappedTCP) }},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				c.fn()
			}
		})
	}
}

// TestAddrPortFromUnixPeer: a local client whose Unix socket is bound to
// a file named like an IP address and port is not an IP peer, so it
// cannot pass an allowlist of IP prefixes.
func TestAddrPortFromUnixPeer(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir) // the client binds a relative path, as a user could
	ln, err := net.Listen("unix", filepath.Join(dir, "server.sock"))
	require.NoError(t, err)
	defer ln.Close()
	c, err := net.DialUnix("unix", &net.UnixAddr{Name: "10.0.0.1:80", Net: "unix"}, ln.Addr().(*net.UnixAddr))
	require.NoError(t, err)
	defer c.Close()
	s, err := ln.Accept()
	require.NoError(t, err)
	defer s.Close()
	require.Equal(t, "10.0.0.1:80", s.RemoteAddr().String(), "the peer's address reads as an IP one")

	trusted := netip.MustParsePrefix("10.0.0.0/8")
	ap, ok := dualstack.AddrPortFrom(s.RemoteAddr())
	assert.False(t, ok)
	assert.False(t, ok && trusted.Contains(ap.Addr()), "a Unix peer passed the allowlist")
}
