package ecosystem

import (
	"context"
	"fmt"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dualstack-go/dualstack"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/peer"
)

// recording keeps the connections a listener accepted.
type recording struct {
	net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func (r *recording) Accept() (net.Conn, error) {
	c, err := r.Listener.Accept()
	if err == nil {
		r.mu.Lock()
		r.conns = append(r.conns, c)
		r.mu.Unlock()
	}
	return c, err
}

// userTimeout reads TCP_USER_TIMEOUT of an accepted connection, in ms.
func userTimeout(t *testing.T, c net.Conn) int {
	t.Helper()
	sc, ok := c.(interface {
		SyscallConn() (syscall.RawConn, error)
	})
	if !ok {
		t.Fatalf("%T has no SyscallConn", c)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var serr error
	if err := rc.Control(func(fd uintptr) { v, serr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT) }); err != nil {
		t.Fatal(err)
	}
	if serr != nil {
		t.Fatal(serr)
	}
	return v
}

// TestGRPCHealth serves gRPC's health service on a dualstack listener in
// each mode, with Multipath TCP and without, and checks it over 127.0.0.1
// and ::1; the server sees the
// client's address unmapped. With keep-alive parameters gRPC sets
// TCP_USER_TIMEOUT on the connections it accepts, but only on a
// *net.TCPConn: in Separate mode it is set (20,000 ms), in Single mode,
// whose connections are dualstack.Conn, gRPC skips it (0), which the
// README says.
func TestGRPCHealth(t *testing.T) {
	for _, c := range []struct {
		mode        dualstack.Mode
		userTimeout int
	}{{dualstack.Separate, 20000}, {dualstack.Single, 0}} {
		for _, mptcp := range []bool{true, false} {
			t.Run(fmt.Sprintf("%v/mptcp %v", c.mode, mptcp), func(t *testing.T) {
				lc := dualstack.ListenConfig{Mode: c.mode}
				lc.SetMultipathTCP(mptcp)
				ln, err := lc.Listen(t.Context(), "tcp", ":0")
				if err != nil {
					t.Fatal(err)
				}
				rec := &recording{Listener: ln}
				srv := grpc.NewServer(grpc.KeepaliveParams(keepalive.ServerParameters{Time: 20 * time.Second, Timeout: 20 * time.Second}))
				hs := health.NewServer()
				healthpb.RegisterHealthServer(srv, hs)
				go srv.Serve(rec)
				defer srv.Stop()
				port := ln.Addr().(*net.TCPAddr).Port
				for _, host := range []string{"127.0.0.1", "::1"} {
					cc, err := grpc.NewClient(net.JoinHostPort(host, fmt.Sprint(port)), grpc.WithTransportCredentials(insecure.NewCredentials()))
					if err != nil {
						t.Fatal(err)
					}
					ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
					var p peer.Peer
					resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p))
					cancel()
					// The server's end is open while the client's is.
					defer cc.Close()
					if err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
						t.Fatalf("%s: %v %v", host, resp, err)
					}
				}
				rec.mu.Lock()
				defer rec.mu.Unlock()
				if len(rec.conns) != 2 {
					t.Fatalf("%d connections accepted", len(rec.conns))
				}
				for _, conn := range rec.conns {
					if got := userTimeout(t, conn); got != c.userTimeout {
						t.Errorf("%v from %v: TCP_USER_TIMEOUT %d ms, want %d", c.mode, conn.RemoteAddr(), got, c.userTimeout)
					}
					if h, _, _ := net.SplitHostPort(conn.RemoteAddr().String()); h != "127.0.0.1" && h != "::1" {
						t.Errorf("peer %v", conn.RemoteAddr())
					}
				}
			})
		}
	}
}
