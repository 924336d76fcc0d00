//go:build linux

package dualstack_test

import (
	"context"
	"net"
	"net/netip"
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

// BenchmarkPacketRead measures packets read per second (and allocations
// per read) while senders over 127.0.0.1 and ::1 keep the socket buffers
// full, for net.ListenPacket's dual-stack UDPConn, Separate (host and
// portable readers) and Single, in one run. "v4" sends over IPv4 only, so
// Separate's IPv6 socket stays idle.
func BenchmarkPacketRead(b *testing.B) {
	type packetConn interface {
		net.PacketConn
		ReadFromUDPAddrPort([]byte) (int, netip.AddrPort, error)
	}
	conns := []struct {
		name   string
		listen func() (packetConn, error)
	}{
		{"net.ListenPacket", func() (packetConn, error) {
			pc, err := net.ListenPacket("udp", ":0")
			if err != nil {
				return nil, err
			}
			return pc.(*net.UDPConn), nil
		}},
		{"Separate", func() (packetConn, error) {
			return (&dualstack.ListenConfig{Mode: dualstack.Separate}).ListenPacket(context.Background(), "udp", ":0")
		}},
		{"Separate-portable", func() (packetConn, error) {
			return dualstack.ListenPacketPortable(&dualstack.ListenConfig{Mode: dualstack.Separate}, context.Background(), "udp", ":0")
		}},
		{"Single", func() (packetConn, error) {
			return (&dualstack.ListenConfig{Mode: dualstack.Single}).ListenPacket(context.Background(), "udp", ":0")
		}},
	}
	for _, load := range []struct {
		name  string
		hosts []string
	}{{"both", []string{"127.0.0.1", "::1"}}, {"v4", []string{"127.0.0.1"}}} {
		for _, read := range []string{"ReadFromUDPAddrPort", "ReadFrom"} {
			for _, c := range conns {
				b.Run(load.name+"/"+read+"/"+c.name, func(b *testing.B) {
					pc, err := c.listen()
					if err != nil {
						b.Fatal(err)
					}
					// One sender, alternating between the families, so
					// that sending takes one core and reading the other.
					var senders []net.Conn
					for _, host := range load.hosts {
						s, err := net.Dial("udp", hostPort(b, host, pc.LocalAddr()))
						if err != nil {
							b.Fatal(err)
						}
						defer s.Close()
						senders = append(senders, s)
					}
					stop := make(chan struct{})
					var wg sync.WaitGroup
					wg.Add(1)
					go func() {
						defer wg.Done()
						msg := make([]byte, 64)
						for i := 0; ; i++ {
							select {
							case <-stop:
								return
							default:
							}
							senders[i%len(senders)].Write(msg)
						}
					}()
					buf := make([]byte, 2048)
					b.ReportAllocs()
					b.ResetTimer()
					for range b.N {
						var err error
						if read == "ReadFrom" {
							_, _, err = pc.ReadFrom(buf)
						} else {
							_, _, err = pc.ReadFromUDPAddrPort(buf)
						}
						if err != nil {
							b.Fatal(err)
						}
					}
					b.StopTimer()
					close(stop)
					wg.Wait()
					pc.Close()
				})
			}
		}
	}
}
