package ecosystem

import (
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/dualstack-go/dualstack"
)

// TestHTTPTestTLSHTTP2: httptest's TLS server with HTTP/2 on a dualstack
// listener, in each mode, answers over 127.0.0.1 and ::1 with HTTP/2.
func TestHTTPTestTLSHTTP2(t *testing.T) {
	for _, mode := range []dualstack.Mode{dualstack.Separate, dualstack.Single} {
		t.Run(mode.String(), func(t *testing.T) {
			secret := rand.Text()
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				fmt.Fprintf(w, "%s %s", secret, r.RemoteAddr)
			}))
			lc := dualstack.ListenConfig{Mode: mode}
			ln, err := lc.Listen(t.Context(), "tcp", "localhost:0")
			if mode == dualstack.Single {
				ln, err = lc.Listen(t.Context(), "tcp", ":0")
			}
			if err != nil {
				t.Fatal(err)
			}
			srv.Listener.Close()
			srv.Listener = ln
			srv.EnableHTTP2 = true
			srv.StartTLS()
			defer srv.Close()
			port := ln.Addr().(*net.TCPAddr).Port
			for _, host := range []string{"127.0.0.1", "::1"} {
				resp, err := srv.Client().Get(fmt.Sprintf("https://%s/", net.JoinHostPort(host, fmt.Sprint(port))))
				if err != nil {
					t.Fatalf("%s: %v", host, err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				f := strings.Fields(string(body))
				if resp.ProtoMajor != 2 || len(f) != 2 || f[0] != secret || !strings.HasPrefix(f[1], net.JoinHostPort(host, "")) {
					t.Errorf("%s: %s %q", host, resp.Proto, body)
				}
			}
		})
	}
}
