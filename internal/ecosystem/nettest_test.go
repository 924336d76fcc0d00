package ecosystem

import (
	"net"
	"strconv"
	"testing"

	"github.com/dualstack-go/dualstack"
	"golang.org/x/net/nettest"
)

// TestNetTestConn runs x/net's nettest.TestConn on connections accepted by
// a dualstack listener in each mode, dialed over each family.
func TestNetTestConn(t *testing.T) {
	for _, mode := range []dualstack.Mode{dualstack.Separate, dualstack.Single} {
		for _, host := range []string{"127.0.0.1", "::1"} {
			t.Run(mode.String()+"/"+host, func(t *testing.T) {
				lc := dualstack.ListenConfig{Mode: mode}
				ln, err := lc.Listen(t.Context(), "tcp", ":0")
				if err != nil {
					t.Fatal(err)
				}
				defer ln.Close()
				port := ln.Addr().(*net.TCPAddr).Port
				nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
					type result struct {
						c   net.Conn
						err error
					}
					ch := make(chan result, 1)
					go func() {
						c, err := ln.Accept()
						ch <- result{c, err}
					}()
					c1, err = net.Dial("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
					if err != nil {
						return nil, nil, nil, err
					}
					r := <-ch
					if r.err != nil {
						c1.Close()
						return nil, nil, nil, r.err
					}
					return c1, r.c, func() { c1.Close(); r.c.Close() }, nil
				})
			})
		}
	}
}
