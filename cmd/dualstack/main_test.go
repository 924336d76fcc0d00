//go:build linux

package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync/atomic"

	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/dualstack-go/dualstack/internal/netns"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// runDoctor runs doctor -json with a small shadowing check and parses the
// report.
func runDoctor(t *testing.T) *Report {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run([]string{"doctor", "-json", "-held", "64", "-binds", "16"}, nil, &out, &errOut)
	require.Equal(t, 0, code, "stderr: %s\nstdout: %s", errOut.String(), out.String())
	var r Report
	require.NoError(t, json.Unmarshal(out.Bytes(), &r), out.String())
	return &r
}

func sysctl(t *testing.T, key string) string {
	t.Helper()
	v, err := netns.Read(key)
	require.NoError(t, err)
	return strings.Join(strings.Fields(v), " ")
}

func listenerOf(t *testing.T, r *Report, call string) ListenResult {
	t.Helper()
	for _, l := range r.Listeners {
		if l.Call == call {
			return l
		}
	}
	t.Fatalf("no %s in the report", call)
	return ListenResult{}
}

// TestDoctorReportsTheHost cross-checks the JSON report with /proc/sys and
// with what the listeners really do.
func TestDoctorReportsTheHost(t *testing.T) {
	r := runDoctor(t)
	assert.Equal(t, runtime.GOOS, r.OS)
	assert.Empty(t, r.Errors)

	assert.Equal(t, sysctl(t, "net/ipv6/bindv6only") == "1", r.V6Only.Default)
	assert.Equal(t, "net.ipv6.bindv6only = "+sysctl(t, "net/ipv6/bindv6only"), r.V6Only.Source)
	require.NotNil(t, r.Ports)
	assert.Equal(t, sysctl(t, "net/ipv4/ip_local_port_range"), fmt.Sprintf("%d %d", r.Ports.First, r.Ports.Last))
	assert.Equal(t, "net.ipv6.conf.all.disable_ipv6 = "+sysctl(t, "net/ipv6/conf/all/disable_ipv6"), r.IPv6.Sysctl)

	assert.Equal(t, "present", r.IPv6.State)
	assert.True(t, r.Mapped.Works)
	assert.Equal(t, "::ffff:127.0.0.1", r.Mapped.SeenAs)

	// dualstack serves both families and sees IPv4 as IPv4.
	ds := listenerOf(t, r, `dualstack.Listen("tcp", ":0")`)
	assert.Equal(t, "Separate", ds.Mode)
	assert.True(t, ds.IPv4 && ds.IPv6, "%+v", ds)
	assert.True(t, strings.HasPrefix(ds.IPv4Seen, "127.0.0.1:"), ds.IPv4Seen)
	dl := listenerOf(t, r, `dualstack.Listen("tcp", "localhost:0")`)
	assert.Len(t, dl.Addrs, 2)
	assert.True(t, dl.IPv4 && dl.IPv6, "%+v", dl)
	// net.Listen's dual-stack socket sees the IPv4 client mapped.
	nl := listenerOf(t, r, `net.Listen("tcp", ":0")`)
	assert.True(t, strings.HasPrefix(nl.IPv4Seen, "[::ffff:127.0.0.1]:"), nl.IPv4Seen)

	require.NotNil(t, r.Shadowing)
	assert.Equal(t, 64, r.Shadowing.Held)
	for _, s := range r.Shadowing.Strategies {
		assert.Equal(t, 16, s.Binds, s.Strategy)
		if strings.HasPrefix(s.Strategy, "dualstack") {
			assert.Zero(t, s.OnHeldPort, "dualstack.Listen landed on a held port")
			assert.Zero(t, s.Shadowed)
		}
	}

	// The human report says the same.
	var out bytes.Buffer
	require.Equal(t, 0, run(nil, nil, &out, io.Discard))
	text := out.String()
	for _, want := range []string{
		"dualstack doctor: linux/",
		"IPV6_V6ONLY default  ",
		r.V6Only.Source,
		fmt.Sprintf("Ephemeral ports      %d-%d (net.ipv4.ip_local_port_range)", r.Ports.First, r.Ports.Last),
		"IPv4-mapped sockets  work: an IPv4 client of a dual-stack socket shows as ::ffff:127.0.0.1",
		`dualstack.Listen("tcp", ":0")`,
		"never shadowed",
	} {
		assert.Contains(t, text, want)
	}
}

// TestDoctorIPv6Disabled: in a namespace with IPv6 disabled and a narrow
// port range, the report says so.
func TestDoctorIPv6Disabled(t *testing.T) {
	netns.Enter(t, append(netns.DisableIPv6, netns.PortRange(45000, 45999))...)
	r := runDoctor(t)
	assert.Equal(t, "disabled", r.IPv6.State)
	assert.Equal(t, "net.ipv6.conf.all.disable_ipv6 = 1", r.IPv6.Sysctl)
	assert.Equal(t, 45000, r.Ports.First)
	assert.Equal(t, 45999, r.Ports.Last)
	dl := listenerOf(t, r, `dualstack.Listen("tcp", "localhost:0")`)
	require.Len(t, dl.Addrs, 1, "Auto on localhost holds 127.0.0.1 alone")
	assert.True(t, strings.HasPrefix(dl.Addrs[0], "127.0.0.1:"))
	assert.True(t, dl.IPv4)
	assert.False(t, dl.IPv6)
}

// TestDoctorBindV6Only: with bindv6only=1 the default is reported on, and
// where it comes from.
func TestDoctorBindV6Only(t *testing.T) {
	netns.Enter(t, netns.BindV6Only...)
	r := runDoctor(t)
	assert.True(t, r.V6Only.Default)
	assert.Equal(t, "net.ipv6.bindv6only = 1", r.V6Only.Source)
	ds := listenerOf(t, r, `dualstack.Listen("tcp", ":0")`)
	assert.True(t, ds.IPv4 && ds.IPv6, "dualstack still serves both: %+v", ds)
}

// exhaustFDs lowers the descriptor limit to a few above those open and
// opens descriptors until none is left. release closes them and restores
// the limit; it may be called more than once.
func exhaustFDs(t *testing.T) (release func()) {
	t.Helper()
	var saved unix.Rlimit
	require.NoError(t, unix.Getrlimit(unix.RLIMIT_NOFILE, &saved))
	ents, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	low := saved
	low.Cur = uint64(len(ents) + 4)
	require.NoError(t, unix.Setrlimit(unix.RLIMIT_NOFILE, &low))
	var fillers []*os.File
	release = func() {
		for _, f := range fillers {
			f.Close()
		}
		fillers = nil
		unix.Setrlimit(unix.RLIMIT_NOFILE, &saved)
	}
	for {
		f, err := os.Open(os.DevNull)
		if err != nil {
			break
		}
		fillers = append(fillers, f)
	}
	return release
}

// TestDoctorExitsOneWhenChecksFail: with no descriptor to spare, the
// checks cannot run; doctor still prints its report, says which checks
// failed, and exits 1.
func TestDoctorExitsOneWhenChecksFail(t *testing.T) {
	release := exhaustFDs(t)
	defer release()

	var out bytes.Buffer
	code := run([]string{"-held", "4", "-binds", "2"}, nil, &out, io.Discard)
	release()
	assert.Equal(t, 1, code)
	assert.Contains(t, out.String(), "Checks that could not run:")
	assert.Contains(t, out.String(), "too many open files")
}

// TestListenEchoes runs listen and exchanges a token over 127.0.0.1 and
// ::1, by TCP and by UDP; it prints each peer and the socket that took it.
func TestListenEchoes(t *testing.T) {
	for _, c := range []struct {
		name string
		args []string
	}{
		{"tcp", []string{"listen", "-count", "2", "localhost:0"}},
		{"tcp single", []string{"listen", "-mode", "single", "-count", "2", ":0"}},
		{"udp", []string{"listen", "-udp", "-count", "2", "localhost:0"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			pr, pw := io.Pipe()
			done := make(chan int, 1)
			var errOut bytes.Buffer
			go func() {
				done <- run(c.args, nil, pw, &errOut)
				pw.Close()
			}()
			lines := make(chan string, 16)
			go func() {
				sc := bufio.NewScanner(pr)
				for sc.Scan() {
					lines <- sc.Text()
				}
				close(lines)
			}()
			next := func() string {
				select {
				case l := <-lines:
					return l
				case <-time.After(5 * time.Second):
					t.Fatalf("no output line; stderr: %s", errOut.String())
					return ""
				}
			}
			first := next()
			require.True(t, strings.HasPrefix(first, "listening on "), first)
			f := strings.Fields(first)
			_, port, err := net.SplitHostPort(f[2])
			require.NoError(t, err)

			network := "tcp"
			if strings.Contains(c.name, "udp") {
				network = "udp"
			}
			for _, host := range []string{"127.0.0.1", "::1"} {
				conn, err := net.Dial(network, net.JoinHostPort(host, port))
				require.NoError(t, err)
				token := rand.Text()
				conn.SetDeadline(time.Now().Add(5 * time.Second))
				_, err = conn.Write([]byte(token))
				require.NoError(t, err)
				buf := make([]byte, 64)
				n, err := io.ReadAtLeast(conn, buf, len(token))
				require.NoError(t, err, host)
				assert.Equal(t, token, string(buf[:n]), "echoed over %s", host)
				conn.Close()
				line := next()
				assert.Contains(t, line, " from "+netHost(host), line)
				assert.NotContains(t, line, "::ffff:", "peers are printed unmapped")
				if network == "tcp" {
					assert.True(t, strings.HasPrefix(next(), "closed "), "want a closed line")
				}
			}
			select {
			case code := <-done:
				assert.Equal(t, 0, code, errOut.String())
			case <-time.After(5 * time.Second):
				t.Fatal("listen did not stop after -count connections")
			}
		})
	}
}

func netHost(host string) string {
	if strings.Contains(host, ":") {
		return "[" + host + "]"
	}
	return host
}

// TestUsage: bad flags and arguments exit 2 with a usage line; -h exits 0.
func TestUsage(t *testing.T) {
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"frobnicate"}, 2, "usage: dualstack"},
		{[]string{"-bogus"}, 2, "usage: dualstack [doctor]"},
		{[]string{"doctor", "extra"}, 2, "usage: dualstack [doctor]"},
		{[]string{"listen"}, 2, "usage: dualstack listen"},
		{[]string{"listen", "-mode", "sideways", ":0"}, 2, "usage: dualstack listen"},
		{[]string{"listen", "-count", "-1", ":0"}, 2, "usage: dualstack listen"},
		{[]string{"listen", "a", "b"}, 2, "usage: dualstack listen"},
		{[]string{"listen", "-h"}, 0, "usage: dualstack listen"},
		{[]string{"doctor", "-h"}, 0, "usage: dualstack [doctor]"},
		{[]string{"-h"}, 0, "dualstack listen [-mode"},
		{[]string{"help"}, 0, "dualstack listen [-mode"},
		{[]string{"listen", "no-port"}, 1, "missing port"},
	} {
		var out, errOut bytes.Buffer
		code := run(c.args, nil, &out, &errOut)
		assert.Equal(t, c.code, code, "%v: stderr %s", c.args, errOut.String())
		assert.Contains(t, errOut.String()+out.String(), c.want, "%v", c.args)
	}
}

// lineCounter counts the lines written to it.
type lineCounter struct{ n atomic.Int64 }

func (l *lineCounter) Write(p []byte) (int, error) {
	l.n.Add(int64(bytes.Count(p, []byte("\n"))))
	return len(p), nil
}

// TestListenBacksOffOnEMFILE: out of descriptors, listen waits between
// accepts, as http.Server does, instead of reporting the error hundreds of
// thousands of times a second; when descriptors are free again it accepts
// the connections that waited, and echoes.
func TestListenBacksOffOnEMFILE(t *testing.T) {
	pr, pw := io.Pipe()
	var errLines lineCounter
	done := make(chan int, 1)
	go func() {
		done <- run([]string{"listen", "-count", "2", "127.0.0.1:0"}, nil, pw, &errLines)
		pw.Close()
	}()
	sc := bufio.NewScanner(pr)
	require.True(t, sc.Scan())
	f := strings.Fields(sc.Text())
	require.GreaterOrEqual(t, len(f), 3, sc.Text())
	addr, err := netip.ParseAddrPort(f[2])
	require.NoError(t, err)
	go io.Copy(io.Discard, pr)

	// The clients' sockets first: connecting needs no new descriptor.
	var clients []int
	for range 2 {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
		require.NoError(t, err)
		clients = append(clients, fd)
	}
	defer func() {
		for _, fd := range clients {
			unix.Close(fd)
		}
	}()
	release := exhaustFDs(t)
	defer release()
	for _, fd := range clients {
		require.NoError(t, unix.Connect(fd, &unix.SockaddrInet4{Port: int(addr.Port()), Addr: addr.Addr().As4()}))
	}
	time.Sleep(time.Second)
	lines := errLines.n.Load()
	release()
	t.Logf("%d error lines in a second out of descriptors", lines)
	assert.Greater(t, lines, int64(0), "accept failed with EMFILE")
	assert.Less(t, lines, int64(20), "listen reported EMFILE %d times in a second", lines)

	for _, fd := range clients {
		token := []byte(rand.Text())
		_, err := unix.Write(fd, token)
		require.NoError(t, err)
		require.NoError(t, unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 5}))
		buf := make([]byte, 64)
		n, err := unix.Read(fd, buf)
		require.NoError(t, err)
		assert.Equal(t, string(token), string(buf[:n]), "echoed once descriptors were free")
		unix.Shutdown(fd, unix.SHUT_WR)
	}
	select {
	case code := <-done:
		assert.Equal(t, 0, code)
	case <-time.After(5 * time.Second):
		t.Fatal("listen did not stop after -count connections")
	}
}

// TestDoctorSaysWhyChecksFailed: out of ephemeral ports, doctor does not
// blame IPv6 or IPv4-mapped sockets: it names what failed, marks those
// checks not run, and exits 1.
func TestDoctorSaysWhyChecksFailed(t *testing.T) {
	t.Run("every port held", func(t *testing.T) {
		netns.Enter(t, netns.PortRange(42500, 42501))
		for _, p := range []string{"42500", "42501"} {
			ln, err := net.Listen("tcp", "[::]:"+p) // dual-stack: both families
			require.NoError(t, err)
			defer ln.Close()
		}
		r, code, text := doctorReport(t)
		assert.Equal(t, 1, code)
		assert.Equal(t, "unknown", r.IPv6.State, "IPv6 is not disabled: the range is full")
		assert.NotContains(t, text, "IPv6                 disabled")
		assert.NotContains(t, text, "do not work here")
		assert.Contains(t, strings.Join(r.Errors, "\n"), "address already in use")
	})
	t.Run("one port", func(t *testing.T) {
		netns.Enter(t, netns.PortRange(42600, 42600))
		r, code, text := doctorReport(t)
		assert.Equal(t, 1, code)
		assert.Equal(t, "present", r.IPv6.State)
		assert.False(t, r.Mapped.Works)
		assert.NotContains(t, text, "do not work here", "a client without a source port says nothing of mapped sockets")
		assert.Contains(t, text, "not checked")
		assert.Contains(t, strings.Join(r.Errors, "\n"), "cannot assign requested address")
		for _, l := range r.Listeners {
			if l.Error == "" {
				assert.NotEmpty(t, l.IPv4Error, "%s: the IPv4 dial could not be made", l.Call)
			}
		}
	})
}

// doctorReport runs doctor twice, for its JSON report and its text.
func doctorReport(t *testing.T) (*Report, int, string) {
	t.Helper()
	var out, text bytes.Buffer
	code := run([]string{"doctor", "-json", "-held", "4", "-binds", "2"}, nil, &out, io.Discard)
	var r Report
	require.NoError(t, json.Unmarshal(out.Bytes(), &r), out.String())
	require.Equal(t, code, run([]string{"doctor", "-held", "4", "-binds", "2"}, nil, &text, io.Discard))
	t.Logf("%s", text.String())
	return &r, code, text.String()
}
