//go:build unix

package dualstack_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dualstack-go/dualstack"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// helperEnv names the helper a re-executed test binary runs instead of
// the tests.
const helperEnv = "DUALSTACK_TEST_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "emfile-server" {
		os.Exit(emfileServer())
	}
	os.Exit(m.Run())
}

// TestHTTPServerBacksOffOnEMFILE runs an http.Server on a Separate
// listener in a child process that has used up its descriptors
// (RLIMIT_NOFILE lowered, the rest filled). Requests over 127.0.0.1 and ::1
// wait in the kernel while Accept fails with EMFILE and the server backs
// off; once the child frees descriptors they are served, and so are new
// ones of both families.
func TestHTTPServerBacksOffOnEMFILE(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=emfile-server")
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	defer cmd.Process.Kill()
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	expect := func(prefix string) []string {
		t.Helper()
		for {
			select {
			case l, ok := <-lines:
				require.True(t, ok, "child exited before %q", prefix)
				if strings.HasPrefix(l, prefix) {
					return strings.Fields(l)
				}
			case <-time.After(20 * time.Second):
				t.Fatalf("no %q from the child", prefix)
			}
		}
	}

	f := expect("PORT")
	port, secret := f[1], f[3]
	expect("FULL")

	client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	get := func(host string) error {
		resp, err := client.Get("http://" + net.JoinHostPort(host, port) + "/")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		if got := strings.Fields(string(body)); len(got) != 2 || got[0] != secret || got[1] != host {
			return fmt.Errorf("%s: answer %q", host, body)
		}
		return nil
	}
	waiting := make(chan error, 2)
	for _, host := range []string{"127.0.0.1", "::1"} {
		go func() { waiting <- get(host) }()
	}
	f = expect("BACKOFF")
	t.Logf("the server logged %s accept errors and backed off", f[1])
	select {
	case err := <-waiting:
		t.Fatalf("a request was served with no descriptors free: %v", err)
	default:
	}

	_, err = io.WriteString(stdin, "FREE\n")
	require.NoError(t, err)
	expect("FREED")
	for range 2 {
		require.NoError(t, <-waiting, "a request that waited through EMFILE")
	}
	for _, host := range []string{"127.0.0.1", "::1"} {
		require.NoError(t, get(host), "a new request after EMFILE")
	}
	_, err = io.WriteString(stdin, "EXIT\n")
	require.NoError(t, err)
	require.NoError(t, cmd.Wait())
}

// emfileServer is the child of TestHTTPServerBacksOffOnEMFILE.
func emfileServer() int {
	fail := func(format string, args ...any) int {
		fmt.Fprintf(os.Stderr, "emfile-server: "+format+"\n", args...)
		return 1
	}
	ln, err := (&dualstack.ListenConfig{Mode: dualstack.Separate}).Listen(context.Background(), "tcp", "localhost:0")
	if err != nil {
		return fail("%v", err)
	}
	secret := rand.Text()
	acceptErrors := make(chan string, 64)
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			host, _, _ := net.SplitHostPort(r.RemoteAddr)
			fmt.Fprintf(w, "%s %s", secret, host)
		}),
		ErrorLog: log.New(writerFunc(func(p []byte) {
			if strings.Contains(string(p), "Accept error") {
				select {
				case acceptErrors <- string(p):
				default:
				}
			}
		}), "", 0),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go srv.Serve(ln)
	fmt.Printf("PORT %d SECRET %s\n", ln.Addr().(*net.TCPAddr).Port, secret)

	var saved unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &saved); err != nil {
		return fail("getrlimit: %v", err)
	}
	open, err := countFDs()
	if err != nil {
		return fail("count descriptors: %v", err)
	}
	low := saved
	setLimit(&low.Cur, open+16)
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &low); err != nil {
		return fail("setrlimit: %v", err)
	}
	var fillers []*os.File
	for {
		f, err := os.Open(os.DevNull)
		if err != nil {
			if !errors.Is(err, syscall.EMFILE) {
				return fail("fill: %v", err)
			}
			break
		}
		fillers = append(fillers, f)
	}
	fmt.Println("FULL")

	// Two errors at least: the server retried after backing off.
	var seen []string
	for len(seen) < 2 {
		select {
		case e := <-acceptErrors:
			if !strings.Contains(e, "too many open files") || !strings.Contains(e, "retrying in") {
				return fail("unexpected accept error: %s", e)
			}
			seen = append(seen, e)
		case <-time.After(20 * time.Second):
			return fail("no accept error")
		}
	}
	fmt.Println("BACKOFF", len(seen))

	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		switch in.Text() {
		case "FREE":
			for _, f := range fillers {
				f.Close()
			}
			unix.Setrlimit(unix.RLIMIT_NOFILE, &saved)
			fmt.Println("FREED")
		case "EXIT":
			srv.Close()
			return 0
		}
	}
	return fail("stdin closed")
}

type writerFunc func(p []byte)

func (f writerFunc) Write(p []byte) (int, error) {
	f(p)
	return len(p), nil
}

// TestCloseRacesAccepts closes a listener while dozens of goroutines
// accept on it and clients dial both families: every Accept ends, with a
// connection or net.ErrClosed, no goroutine or descriptor is left, and the
// race detector has nothing to say.
func TestCloseRacesAccepts(t *testing.T) {
	for _, impl := range acceptImpls {
		t.Run(impl.name, func(t *testing.T) {
			checkFDs := requireNoFDLeak(t)
			for round := range 20 {
				ln, err := impl.listen(&dualstack.ListenConfig{Mode: dualstack.Separate}, context.Background(), "tcp", "localhost:0")
				require.NoError(t, err)
				var accepters, dialers sync.WaitGroup
				stop := make(chan struct{})
				for range 32 {
					accepters.Add(1)
					go func() {
						defer accepters.Done()
						for {
							c, err := ln.Accept()
							if err != nil {
								assert.ErrorIs(t, err, net.ErrClosed)
								return
							}
							c.Close()
						}
					}()
				}
				for _, host := range []string{"127.0.0.1", "::1", "127.0.0.1", "::1"} {
					dialers.Add(1)
					go func() {
						defer dialers.Done()
						for {
							select {
							case <-stop:
								return
							default:
							}
							if c, err := net.DialTimeout("tcp", hostPort(t, host, ln.Addr()), ioTimeout); err == nil {
								c.Close()
							}
						}
					}()
				}
				time.Sleep(time.Duration(round%5) * time.Millisecond)
				require.NoError(t, ln.Close())
				done := make(chan struct{})
				go func() { accepters.Wait(); close(done) }()
				select {
				case <-done:
				case <-time.After(ioTimeout):
					t.Fatalf("round %d: Accept calls still blocked after Close", round)
				}
				close(stop)
				dialers.Wait()
				requireNoListenerGoroutines(t)
			}
			checkFDs()
		})
	}
}

// TestListenCloseCycles listens and closes 10,000 times, in every mode and
// both acceptors, with an Accept on some: descriptors and goroutines end
// where they started.
func TestListenCloseCycles(t *testing.T) {
	cycles := 10000
	if testing.Short() {
		cycles = 1000
	}
	// No collection, so no finalizer closes a descriptor that Close forgot.
	runtime.GC()
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	fds, goroutines := openFDs(t), runtime.NumGoroutine()
	for i := range cycles {
		impl := acceptImpls[i%len(acceptImpls)]
		lc := dualstack.ListenConfig{Mode: modes[i%len(modes)]}
		address := ":0"
		if i%7 == 0 && lc.Mode != dualstack.Single {
			address = "localhost:0"
		}
		ln, err := impl.listen(&lc, context.Background(), "tcp", address)
		require.NoError(t, err, "cycle %d", i)
		if i%10 == 0 {
			// Start the accept machinery, and leave it by a deadline.
			require.NoError(t, ln.SetDeadline(time.Now().Add(time.Millisecond)))
			_, err := ln.Accept()
			var ne net.Error
			require.ErrorAs(t, err, &ne)
			require.True(t, ne.Timeout())
		}
		require.NoError(t, ln.Close(), "cycle %d", i)
	}
	// Polled here, not in require.Eventually, whose goroutine would count.
	deadline := time.Now().Add(ioTimeout)
	for (openFDs(t) != fds || runtime.NumGoroutine() > goroutines) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	require.Equal(t, fds, openFDs(t), "descriptors after %d cycles", cycles)
	require.LessOrEqual(t, runtime.NumGoroutine(), goroutines, "goroutines after %d cycles", cycles)
	t.Logf("%d Listen/Close cycles: %d descriptors and %d goroutines before and after", cycles, fds, goroutines)
}
