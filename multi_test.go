//go:build unix

package dualstack_test

import (
	"fmt"
	"net"
	"runtime"
	"testing"

	"github.com/dualstack-go/dualstack"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMultiListen: several addresses, one port, every socket reached
// (token exchange), duplicates bound once.
func TestMultiListen(t *testing.T) {
	cases := []struct {
		addresses []string
		addrs     []string // the hosts of Addrs
		reach     []string
	}{
		{[]string{"127.0.0.1:0", "[::1]:0"}, []string{"127.0.0.1", "::1"}, []string{"127.0.0.1", "::1"}},
		{[]string{"[::1]:0", "127.0.0.1:0"}, []string{"127.0.0.1", "::1"}, []string{"127.0.0.1", "::1"}},
		{[]string{"localhost:0", "127.0.0.1:0", "[::1]:0"}, []string{"127.0.0.1", "::1"}, []string{"127.0.0.1", "::1"}},
		{[]string{":0", ":0"}, []string{"0.0.0.0", "::"}, []string{"127.0.0.1", "::1"}},
	}
	if runtime.GOOS == "linux" {
		// Linux's lo serves all of 127.0.0.0/8.
		cases = append(cases, struct {
			addresses []string
			addrs     []string
			reach     []string
		}{[]string{"127.0.0.1:0", "127.0.0.2:0", "[::1]:0"}, []string{"127.0.0.1", "127.0.0.2", "::1"}, []string{"127.0.0.1", "127.0.0.2", "::1"}})
	}
	for _, c := range cases {
		t.Run(fmt.Sprint(c.addresses), func(t *testing.T) {
			checkFDs := requireNoFDLeak(t)
			ln, err := dualstack.MultiListen("tcp", c.addresses...)
			require.NoError(t, err)
			var hosts []string
			port := portOf(t, ln.Addr())
			for _, a := range ln.Addrs() {
				hosts = append(hosts, a.(*net.TCPAddr).IP.String())
				assert.Equal(t, port, portOf(t, a), "one port")
			}
			assert.Equal(t, c.addrs, hosts)
			ts := serveTokens(t, ln)
			for _, h := range c.reach {
				_, err := ts.exchange("tcp", net.JoinHostPort(h, fmt.Sprint(port)))
				require.NoError(t, err, h)
			}
			ln.Close()
			checkFDs()
		})
	}
}

// TestMultiListenPacket: the same for UDP.
func TestMultiListenPacket(t *testing.T) {
	pc, err := dualstack.MultiListenPacket("udp", "127.0.0.1:0", "[::1]:0")
	require.NoError(t, err)
	defer pc.Close()
	secret := echo(t, pc)
	for _, h := range []string{"127.0.0.1", "::1"} {
		_, err := udpExchange(pc, h, secret)
		require.NoError(t, err, h)
	}
}

// TestMultiListenRefuses: what cannot be one listener on one port is an
// error, a *net.OpError naming the cause, with nothing left open.
func TestMultiListenRefuses(t *testing.T) {
	for _, c := range []struct {
		name      string
		mode      dualstack.Mode
		addresses []string
		want      string
	}{
		{"none", dualstack.Auto, nil, "no address"},
		{"two ports", dualstack.Auto, []string{"127.0.0.1:0", "[::1]:1234"}, "share one port"},
		{"wildcard and its loopback", dualstack.Auto, []string{"0.0.0.0:0", "127.0.0.1:0"}, "cannot share a port"},
		// With "tcp", 0.0.0.0 is both families' wildcard, as for Listen.
		{"0.0.0.0 and ::1", dualstack.Auto, []string{"0.0.0.0:0", "[::1]:0"}, "cannot share a port"},
		{"dual-stack wildcard and a loopback", dualstack.Single, []string{":0", "127.0.0.1:0"}, "Single mode"},
		{"a bad address among them", dualstack.Auto, []string{"127.0.0.1:0", "[::1]"}, "[::1]: address [::1]: missing port"},
	} {
		t.Run(c.name, func(t *testing.T) {
			checkFDs := requireNoFDLeak(t)
			lc := dualstack.ListenConfig{Mode: c.mode}
			ln, err := lc.MultiListen(t.Context(), "tcp", c.addresses...)
			assert.Nil(t, ln)
			var oe *net.OpError
			require.ErrorAs(t, err, &oe)
			assert.Equal(t, "listen", oe.Op)
			assert.ErrorContains(t, err, c.want)
			checkFDs()
		})
	}
}

// TestMultiListenAtomic: when one address of the list is taken, the call
// fails and holds none of the others.
func TestMultiListenAtomic(t *testing.T) {
	checkFDs := requireNoFDLeak(t)
	other, err := net.Listen("tcp6", "[::1]:0")
	require.NoError(t, err)
	defer other.Close()
	port := portOf(t, other.Addr())
	ln, err := dualstack.MultiListen("tcp", fmt.Sprintf("127.0.0.1:%d", port), fmt.Sprintf("[::1]:%d", port))
	require.Error(t, err)
	assert.Nil(t, ln)
	free, err := net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", port))
	require.NoError(t, err, "the IPv4 address must have been let go")
	free.Close()
	other.Close()
	checkFDs()
}
