package dualstack_test

import (
	"context"
	"net"
	"testing"

	"github.com/dualstack-go/dualstack"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestMultipathTCPAsNet: every socket of a listener is of the protocol
// that net.ListenConfig's listener gets with the same setting (net's
// default, GODEBUG=multipathtcp=0, SetMultipathTCP true and false) on
// this kernel, and MultipathTCP reports what net's does.
func TestMultipathTCPAsNet(t *testing.T) {
	for _, c := range []struct {
		name    string
		godebug string
		set     *bool
	}{
		{"default", "", nil},
		{"GODEBUG=multipathtcp=0", "multipathtcp=0", nil},
		{"GODEBUG=multipathtcp=3", "multipathtcp=3", nil},
		{"set true", "", new(true)},
		{"set false", "", new(false)},
		{"set true over GODEBUG=0", "multipathtcp=0", new(true)},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("GODEBUG", c.godebug)
			var nlc net.ListenConfig
			var lc dualstack.ListenConfig
			if c.set != nil {
				nlc.SetMultipathTCP(*c.set)
				lc.SetMultipathTCP(*c.set)
			}
			assert.Equal(t, nlc.MultipathTCP(), lc.MultipathTCP())
			nln, err := nlc.Listen(context.Background(), "tcp", "127.0.0.1:0")
			require.NoError(t, err)
			defer nln.Close()
			nrc, err := nln.(*net.TCPListener).SyscallConn()
			require.NoError(t, err)
			want := sockoptInt(t, nrc, unix.SOL_SOCKET, unix.SO_PROTOCOL)

			for _, mode := range []dualstack.Mode{dualstack.Separate, dualstack.Single} {
				lc.Mode = mode
				ln, err := lc.Listen(context.Background(), "tcp", ":0")
				require.NoError(t, err)
				rcs, err := ln.SyscallConns()
				require.NoError(t, err)
				for i, rc := range rcs {
					assert.Equal(t, want, sockoptInt(t, rc, unix.SOL_SOCKET, unix.SO_PROTOCOL), "%v socket %v", mode, ln.Addrs()[i])
				}
				ts := serveTokens(t, ln)
				for _, h := range []string{"127.0.0.1", "::1"} {
					_, err := ts.exchange("tcp", hostPort(t, h, ln.Addr()))
					require.NoError(t, err, h)
				}
				ln.Close()
			}
			t.Logf("net.ListenConfig: MultipathTCP %v, protocol %d", nlc.MultipathTCP(), want)
		})
	}
}
