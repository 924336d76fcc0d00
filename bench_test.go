//go:build unix

package dualstack_test

import (
	"context"
	"io"
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

// BenchmarkListenClose measures Listen and Close on port 0, against
// net.Listen. Separate on Linux makes a dual-stack probe (socket, option,
// bind, close) to pick a port free on both families, then binds and
// listens an IPv4 and an IPv6 socket, hands each to the net package
// (net.FileListener: a dup and its registration with the poller) and makes
// the epoll descriptor Accept waits on.
func BenchmarkListenClose(b *testing.B) {
	for _, c := range []struct {
		name, address string
		listen        func(string) (net.Listener, error)
	}{
		{"net.Listen/wildcard", ":0", func(a string) (net.Listener, error) { return net.Listen("tcp", a) }},
		{"Separate/wildcard", ":0", func(a string) (net.Listener, error) {
			return (&dualstack.ListenConfig{Mode: dualstack.Separate}).Listen(context.Background(), "tcp", a)
		}},
		{"Single/wildcard", ":0", func(a string) (net.Listener, error) {
			return (&dualstack.ListenConfig{Mode: dualstack.Single}).Listen(context.Background(), "tcp", a)
		}},
		{"net.Listen/localhost", "localhost:0", func(a string) (net.Listener, error) { return net.Listen("tcp", a) }},
		{"Separate/localhost", "localhost:0", func(a string) (net.Listener, error) {
			return (&dualstack.ListenConfig{Mode: dualstack.Separate}).Listen(context.Background(), "tcp", a)
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				ln, err := c.listen(c.address)
				if err != nil {
					b.Fatal(err)
				}
				ln.Close()
			}
		})
	}
}

// BenchmarkCopy measures bytes per second that io.Copy moves from one
// accepted connection to another, as a proxy does: the kernel splices
// between two *net.TCPConn, and Single mode's Conn must keep that path. The
// benchmark's goroutine writes a chunk into the first connection and reads
// it back from the second while one goroutine runs io.Copy between them;
// "net.TCPConn" copies between the connections net.Listen accepts.
func BenchmarkCopy(b *testing.B) {
	const chunk = 256 << 10
	for _, bl := range benchListeners {
		if bl.name == "Separate-portable" {
			continue // the acceptor does not touch the connections
		}
		name := bl.name
		if name == "net.Listen" {
			name = "net.TCPConn"
		}
		b.Run(name, func(b *testing.B) {
			ln, err := bl.listen()
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			pair := func() (client net.Conn, server net.Conn) {
				client, err := net.Dial("tcp", hostPort(b, "127.0.0.1", ln.Addr()))
				if err != nil {
					b.Fatal(err)
				}
				server, err = ln.Accept()
				if err != nil {
					b.Fatal(err)
				}
				return client, server
			}
			src, in := pair()
			dst, out := pair()
			defer dst.Close()
			defer in.Close()
			copied := make(chan error, 1)
			go func() {
				_, err := io.Copy(out, in)
				out.Close()
				copied <- err
			}()
			wbuf, rbuf := make([]byte, chunk), make([]byte, chunk)
			b.SetBytes(chunk)
			b.ResetTimer()
			for range b.N {
				if _, err := src.Write(wbuf); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(dst, rbuf); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			src.Close()
			if err := <-copied; err != nil {
				b.Fatal(err)
			}
		})
	}
}
