package ecosystem

import (
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/dualstack-go/dualstack"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"golang.org/x/net/ipv4"
)

// oobConn gives quic-go its batch path (ECN, packet info, GSO checks) over
// a dualstack PacketConn: quic-go's OOBCapablePacketConn, and ReadBatch so
// that quic-go does not read through the raw connection, which a
// PacketConn of several sockets cannot serve. Each ReadBatch returns one
// packet, from whichever socket has one, with that socket's ancillary data.
type oobConn struct{ *dualstack.PacketConn }

func (c oobConn) ReadMsgUDP(b, oob []byte) (int, int, int, *net.UDPAddr, error) {
	n, oobn, flags, ap, err := c.ReadMsgUDPAddrPort(b, oob)
	return n, oobn, flags, net.UDPAddrFromAddrPort(ap), err
}

func (c oobConn) WriteMsgUDP(b, oob []byte, addr *net.UDPAddr) (int, int, error) {
	return c.WriteMsgUDPAddrPort(b, oob, addr.AddrPort())
}

func (c oobConn) ReadBatch(ms []ipv4.Message, _ int) (int, error) {
	if len(ms) == 0 || len(ms[0].Buffers) == 0 {
		return 0, nil
	}
	n, oobn, flags, ap, err := c.ReadMsgUDPAddrPort(ms[0].Buffers[0], ms[0].OOB)
	if err != nil {
		return 0, err
	}
	ms[0].N, ms[0].NN, ms[0].Flags, ms[0].Addr = n, oobn, flags, net.UDPAddrFromAddrPort(ap)
	return 1, nil
}

// TestHTTP3 serves HTTP/3 with quic-go on a dualstack PacketConn, in each
// mode, as it is and through oobConn, and requires answers (carrying a
// secret of this server) over 127.0.0.1 and ::1 with the client's address
// unmapped. quic-go's own interface check says which read path it takes.
func TestHTTP3(t *testing.T) {
	cert, pool := testCert(t)
	for _, mode := range []dualstack.Mode{dualstack.Separate, dualstack.Single} {
		for _, wrap := range []bool{false, true} {
			t.Run(fmt.Sprintf("%v/oob adapter %v", mode, wrap), func(t *testing.T) {
				lc := dualstack.ListenConfig{Mode: mode}
				pc, err := lc.ListenPacket(t.Context(), "udp", ":0")
				if err != nil {
					t.Fatal(err)
				}
				var conn net.PacketConn = pc
				if wrap {
					conn = oobConn{pc}
				}
				_, oob := conn.(quic.OOBCapablePacketConn)
				t.Logf("quic-go's OOBCapablePacketConn: %v", oob)
				if oob != wrap {
					t.Errorf("OOB path %v, want %v", oob, wrap)
				}
				secret := rand.Text()
				srv := &http3.Server{
					TLSConfig: http3.ConfigureTLSConfig(&tls.Config{Certificates: []tls.Certificate{cert}}),
					Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
						fmt.Fprintf(w, "%s %s", secret, r.RemoteAddr)
					}),
				}
				done := make(chan error, 1)
				go func() { done <- srv.Serve(conn) }()
				defer func() {
					srv.Close()
					pc.Close()
					<-done
				}()
				tr := &http3.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
				defer tr.Close()
				client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
				port := pc.LocalAddr().(*net.UDPAddr).Port
				for _, host := range []string{"127.0.0.1", "::1"} {
					resp, err := client.Get(fmt.Sprintf("https://%s/", net.JoinHostPort(host, fmt.Sprint(port))))
					if err != nil {
						t.Fatalf("%s: %v", host, err)
					}
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					f := strings.Fields(string(body))
					if resp.ProtoMajor != 3 || len(f) != 2 || f[0] != secret {
						t.Fatalf("%s: %s %q", host, resp.Proto, body)
					}
					if ap := netip.MustParseAddrPort(f[1]); ap.Addr().String() != host {
						t.Errorf("%s: the server saw %v", host, ap)
					}
				}
			})
		}
	}
}
