//go:build rump && linux && cgo

package rump

import (
	"errors"
	"net/netip"
	"syscall"
	"testing"
	"time"
)

// TestStack: the stack answers as NetBSD does: v6only on by default, a
// port held by one socket refused to another, with the host's errno.
func TestStack(t *testing.T) {
	if err := Init(); err != nil {
		t.Fatal(err)
	}
	v6only, err := SysctlValue(MIBV6Only)
	if err != nil || v6only != 1 {
		t.Fatalf("net.inet6.ip6.v6only = %d, %v", v6only, err)
	}
	a, err := Socket(4, false)
	if err != nil {
		t.Fatal(err)
	}
	defer Close(a)
	if err := Bind(a, netip.MustParseAddrPort("127.0.0.1:0")); err != nil {
		t.Fatal(err)
	}
	name, err := Name(a)
	if err != nil || name.Port() == 0 {
		t.Fatalf("getsockname: %v %v", name, err)
	}
	if err := Listen(a, 4); err != nil {
		t.Fatal(err)
	}
	b, _ := Socket(4, false)
	defer Close(b)
	if err := Bind(b, name); !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("second bind of %v: %v, want EADDRINUSE", name, err)
	}
	c, _ := Socket(4, false)
	defer Close(c)
	if err := Connect(c, name); err != nil {
		t.Fatal(err)
	}
	ready, err := Readable([]int{a}, 1000)
	if err != nil || !ready[0] {
		t.Fatalf("listener not readable: %v", err)
	}
	s, peer, err := Accept(a)
	if err != nil {
		t.Fatal(err)
	}
	Close(s)
	if !peer.Addr().Is4() {
		t.Fatalf("peer %v", peer)
	}
}

// TestConnectWaitTimesOut: a connect the stack does not answer (to a
// socket bound but not listening, whose SYN NetBSD drops) ends within
// ConnectWait's time, from one client port again and again.
func TestConnectWaitTimesOut(t *testing.T) {
	if err := Init(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		a, _ := Socket(4, false)
		defer Close(a)
		if err := Bind(a, netip.MustParseAddrPort("0.0.0.0:0")); err != nil {
			t.Fatal(err)
		}
		name, _ := Name(a)
		name = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), name.Port())
		c, _ := Socket(4, false)
		SetReuseAddr(c, true)
		SetLinger0(c)
		if err := Bind(c, netip.MustParseAddrPort("127.0.0.1:19801")); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		err := ConnectWait(c, name, 300)
		t.Logf("connect to a bound socket: %v after %v", err, time.Since(start))
		Close(c)
		if time.Since(start) > 5*time.Second {
			t.Fatalf("ConnectWait(300 ms) took %v", time.Since(start))
		}
	}
}
