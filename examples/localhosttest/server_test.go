package localhosttest

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/dualstack-go/dualstack"
)

// newServer is httptest.NewServer with a dualstack listener: the one line
// that changes is the listener.
func newServer(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	ln, err := dualstack.Listen("tcp", "localhost:0") // was: net.Listen("tcp", "localhost:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Listener.Close() // the default listener httptest made
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

func TestGreeterOverBothLoopbacks(t *testing.T) {
	srv := newServer(t, Greeter())
	port := strconv.Itoa(srv.Listener.Addr().(*net.TCPAddr).Port)
	for _, host := range []string{"127.0.0.1", "::1"} {
		resp, err := srv.Client().Get("http://" + net.JoinHostPort(host, port) + "/?name=" + host)
		if err != nil {
			t.Fatalf("over %s: %v", host, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := "hello, " + host; string(body) != want {
			t.Errorf("over %s: got %q, want %q", host, body, want)
		}
	}
}
