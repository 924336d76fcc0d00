//go:build linux

package dualstack_test

import (
	"context"
	"net"
	"sync"
	"testing"

	"github.com/dualstack-go/dualstack"
)

// benchListeners are the listeners compared in one run: the standard
// library's dual-stack listener and ours.
var benchListeners = []struct {
	name   string
	listen func() (net.Listener, error)
}{
	{"net.Listen", func() (net.Listener, error) { return net.Listen("tcp", ":0") }},
	{"Separate", func() (net.Listener, error) {
		return (&dualstack.ListenConfig{Mode: dualstack.Separate}).Listen(context.Background(), "tcp", ":0")
	}},
	{"Separate-portable", func() (net.Listener, error) {
		return dualstack.ListenPortableAccept(&dualstack.ListenConfig{Mode: dualstack.Separate}, context.Background(), "tcp", ":0")
	}},
	{"Single", func() (net.Listener, error) {
		return (&dualstack.ListenConfig{Mode: dualstack.Single}).Listen(context.Background(), "tcp", ":0")
	}},
}

// BenchmarkAccept measures connections accepted per second while two
// clients dial without pause, one over 127.0.0.1 and one over ::1. Clients
// close with a reset so that no TIME_WAIT state builds up.
func BenchmarkAccept(b *testing.B) {
	for _, bl := range benchListeners {
		b.Run(bl.name, func(b *testing.B) {
			ln, err := bl.listen()
			if err != nil {
				b.Fatal(err)
			}
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for _, host := range []string{"127.0.0.1", "::1"} {
				addr := hostPort(b, host, ln.Addr())
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						select {
						case <-stop:
							return
						default:
						}
						c, err := net.Dial("tcp", addr)
						if err != nil {
							continue
						}
						c.(*net.TCPConn).SetLinger(0)
						c.Close()
					}
				}()
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				c, err := ln.Accept()
				if err != nil {
					b.Fatal(err)
				}
				c.Close()
			}
			b.StopTimer()
			close(stop)
			ln.Close() // fails the clients' dials, so they see stop
			wg.Wait()
		})
	}
}
