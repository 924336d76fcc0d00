//go:build unix

package dualstack_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dualstack-go/dualstack"
	"github.com/stretchr/testify/require"
)

// addressForms are the address forms of the table test against net.Listen
// and net.ListenPacket. Each is tried with every network of the protocol;
// %s stands for the loopback interface's name.
var addressForms = []string{
	"", ":", ":0", "0.0.0.0:0", "[::]:0", "0:0", "[::0]:0",
	"127.0.0.1:0", "[::1]:0", "localhost:0", "LOCALHOST:0",
	"[::ffff:127.0.0.1]:0", "[::ffff:0.0.0.0]:0",
	"[::%%%s]:0", "[::1%%%s]:0", "[fe80::1%%%s]:0", "[::1%nosuchif]:0", "[fe80::1%nosuchif]:0",
	":http", "127.0.0.1:http", ":nosuchservice",
	"127.0.0.1", "[::1]", "::1:0", "127.0.0.1:", "[::]:",
	"127.0.0.1:65536", ":-1", ":0x10",
	"192.0.2.1:0", "[2001:db8::1]:0", "224.0.0.1:0", "[ff02::1]:0",
	"[127.0.0.1]:0", "[::1]:0:0", "256.0.0.1:0",
}

// formDiffers names the forms where dualstack means more than net.Listen
// on purpose, with the reason, and what dualstack must do instead: be
// reached over 127.0.0.1 (want4) and ::1 (want6).
func formDiffers(network, address string) (why string, want4, want6 bool) {
	host, _, _ := net.SplitHostPort(address)
	if strings.EqualFold(host, "localhost") {
		last := network[len(network)-1]
		return "localhost is never resolved: it is 127.0.0.1 and ::1, those of the network's families; net.Listen serves the first address the resolver gives",
			last != '6', last != '4'
	}
	return "", false, false
}

// outcome is what a Listen call did: its error's kind, or which loopback
// addresses reach it and the address it reports.
type outcome struct {
	err            string // "" when it listened
	reach4, reach6 bool
	addr           string // Addr() with the port taken out
}

func (o outcome) String() string {
	if o.err != "" {
		return "error " + o.err
	}
	return fmt.Sprintf("listens on %s, reached over 127.0.0.1 %v, over ::1 %v", o.addr, o.reach4, o.reach6)
}

// errKind is the part of a Listen error that the table compares: the
// cause without the operation, network and address around it, which
// dualstack words its own way.
func errKind(err error) string {
	var (
		ae  *net.AddrError
		dns *net.DNSError
		pe  *net.ParseError
		un  net.UnknownNetworkError
		en  syscall.Errno
	)
	switch {
	case errors.As(err, &ae):
		return "address error: " + ae.Err
	case errors.As(err, &dns):
		return "lookup error: " + dns.Err
	case errors.As(err, &pe):
		return "parse error: " + pe.Type
	case errors.As(err, &un):
		return "unknown network"
	case errors.As(err, &en):
		return "errno: " + en.Error()
	}
	return "other: " + err.Error()
}

// portless returns a's text with its port replaced by P.
func portless(a net.Addr) string {
	s := a.String()
	if i := strings.LastIndexByte(s, ':'); i >= 0 {
		return s[:i] + ":P"
	}
	return s
}

// streamOutcome listens with listen and finds out who reaches it.
func streamOutcome(t *testing.T, listen func() (net.Listener, error)) outcome {
	ln, err := listen()
	if err != nil {
		return outcome{err: errKind(err)}
	}
	ts := serveTokens(t, ln)
	port := portOf(t, ln.Addr())
	o := outcome{addr: portless(ln.Addr())}
	o.reach4 = ts.reaches("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	o.reach6 = ts.reaches("tcp", fmt.Sprintf("[::1]:%d", port))
	ln.Close()
	return o
}

// packetOutcome listens with listen and finds out whose datagrams to the
// port reach it, by echoing a token.
func packetOutcome(t *testing.T, listen func() (net.PacketConn, error)) outcome {
	pc, err := listen()
	if err != nil {
		return outcome{err: errKind(err)}
	}
	defer pc.Close()
	port := portOf(t, pc.LocalAddr())
	secret := rand.Text() // the answer carries it: this PacketConn answered
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 64)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(append([]byte(secret+" "), buf[:n]...), from)
		}
	}()
	reach := func(host string) bool {
		c, err := net.Dial("udp", net.JoinHostPort(host, fmt.Sprint(port)))
		if err != nil {
			return false
		}
		defer c.Close()
		token := rand.Text()
		for range 3 {
			c.Write([]byte(token))
			c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			buf := make([]byte, 64)
			if n, err := c.Read(buf); err == nil && string(buf[:n]) == secret+" "+token {
				return true
			}
		}
		return false
	}
	o := outcome{addr: portless(pc.LocalAddr())}
	o.reach4, o.reach6 = reach("127.0.0.1"), reach("::1")
	pc.Close()
	<-done
	return o
}

// TestSameMeaningAsNetListen runs every address form with every network
// through net.Listen (net.ListenPacket) and dualstack's in each mode, and
// requires the same outcome: both refuse, for the same cause, or both
// listen, are reached over the same loopback addresses and report the same
// address. The forms where dualstack means more on purpose are listed with
// the reason, and must differ as described. Single either serves what
// net.Listen serves or, where that is not both families' wildcard, is an
// error that says so; it never quietly becomes another mode.
func TestSameMeaningAsNetListen(t *testing.T) {
	lo := loopbackName(t)
	rows := 0
	for _, udp := range []bool{false, true} {
		networks := []string{"tcp", "tcp4", "tcp6"}
		if udp {
			networks = []string{"udp", "udp4", "udp6"}
		}
		for _, form := range addressForms {
			address := form
			if strings.Contains(form, "%%%s") {
				address = fmt.Sprintf(form, lo)
			}
			for _, network := range networks {
				var want outcome
				if udp {
					want = packetOutcome(t, func() (net.PacketConn, error) { return net.ListenPacket(network, address) })
				} else {
					want = streamOutcome(t, func() (net.Listener, error) { return net.Listen(network, address) })
				}
				if want.err == "errno: "+syscall.EACCES.Error() && os.Geteuid() != 0 {
					continue // a privileged port
				}
				for _, mode := range []dualstack.Mode{dualstack.Auto, dualstack.Separate, dualstack.Single} {
					rows++
					lc := dualstack.ListenConfig{Mode: mode}
					var got outcome
					if udp {
						got = packetOutcome(t, func() (net.PacketConn, error) {
							return lc.ListenPacket(context.Background(), network, address)
						})
					} else {
						got = streamOutcome(t, func() (net.Listener, error) { return lc.Listen(context.Background(), network, address) })
					}
					why, want4, want6 := formDiffers(network, address)
					switch {
					case mode == dualstack.Single && strings.Contains(got.err, "Single mode serves"):
						// Single is what it says or an error: it serves
						// both families' wildcard on one socket, which
						// net.Listen's meaning here is not.
						if want.err == "" && want.reach4 && want.reach6 && why == "" {
							t.Errorf("%s %q: Single refused what net.Listen serves on both families: %v", network, address, got)
						}
					case why != "":
						if got.err != "" || got.reach4 != want4 || got.reach6 != want6 {
							t.Errorf("%v %s %q: %s, but dualstack: %v", mode, network, address, why, got)
						}
					case got != want:
						t.Errorf("%v %s %q:\n\tnet:       %v\n\tdualstack: %v", mode, network, address, want, got)
					}
				}
			}
		}
	}
	t.Logf("%d network and address pairs", rows)
}

// TestAddressFormsParse keeps the table honest: each form is one net
// itself parses or refuses, and the forms cover what the table claims.
func TestAddressFormsParse(t *testing.T) {
	var literal, mapped, zoned int
	for _, f := range addressForms {
		host, _, err := net.SplitHostPort(strings.ReplaceAll(f, "%%", "%"))
		if err != nil {
			continue
		}
		if a, err := netip.ParseAddr(host); err == nil {
			literal++
			if a.Is4In6() {
				mapped++
			}
			if a.Zone() != "" {
				zoned++
			}
		}
	}
	require.GreaterOrEqual(t, len(addressForms)*3, 40)
	require.Positive(t, mapped)
	require.Positive(t, zoned)
	require.Positive(t, literal)
}
