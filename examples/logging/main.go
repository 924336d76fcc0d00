// Command logging is an HTTP server that logs each client with log/slog in
// normalized form: IPv4 clients as 192.0.2.1, never ::ffff:192.0.2.1,
// including the hops of an X-Forwarded-For header written by a proxy that
// listens on a dual-stack socket.
//
// It listens in Single mode, one IPv6 socket that also takes IPv4, where
// the kernel reports IPv4 clients IPv4-mapped: dualstack's connections
// report them unmapped, and dualstack.UnmapString cleans up the header.
//
// Usage:
//
//	go run ./examples/logging              # serve on :8080
//	go run ./examples/logging -addr :9000
//	go run ./examples/logging -demo        # serve on :0, send itself three requests, exit
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/dualstack-go/dualstack"
)

func main() {
	addr := flag.String("addr", ":8080", "address to listen on")
	demo := flag.Bool("demo", false, "listen on :0, send a few requests to itself over IPv4 and IPv6, and exit")
	flag.Parse()
	logger := slog.New(slog.NewTextHandler(os.Stdout, nil))
	if *demo {
		*addr = ":0"
	}

	lc := dualstack.ListenConfig{Mode: dualstack.Single}
	ln, err := lc.Listen(context.Background(), "tcp", *addr)
	if err != nil {
		logger.Error("listen", "err", err)
		os.Exit(1)
	}
	logger.Info("listening", "addrs", fmt.Sprint(ln.Addrs()), "mode", ln.Mode())

	srv := &http.Server{Handler: logRequests(logger, http.HandlerFunc(hello)), ReadHeaderTimeout: 10 * time.Second}
	if !*demo {
		logger.Error("serve", "err", srv.Serve(ln))
		os.Exit(1)
	}
	go srv.Serve(ln)
	defer srv.Close()
	if err := selfTest(ln.Addr().(*net.TCPAddr).Port); err != nil {
		logger.Error("demo", "err", err)
		os.Exit(1)
	}
}

func hello(w http.ResponseWriter, r *http.Request) {
	fmt.Fprintf(w, "hello, %s\n", dualstack.UnmapString(r.RemoteAddr))
}

// logRequests logs the method, path, client and forwarded-for chain of
// each request. r.RemoteAddr is already unmapped in Single mode; UnmapString
// is idempotent, so passing it through costs nothing and also covers
// listeners that do not normalize.
func logRequests(logger *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		attrs := []any{"method", r.Method, "path", r.URL.Path, "client", dualstack.UnmapString(r.RemoteAddr)}
		if xff := r.Header.Get("X-Forwarded-For"); xff != "" {
			hops := strings.Split(xff, ",")
			for i, hop := range hops {
				hops[i] = dualstack.UnmapString(strings.TrimSpace(hop))
			}
			attrs = append(attrs, "forwarded_for", strings.Join(hops, ", "))
		}
		logger.Info("request", attrs...)
		next.ServeHTTP(w, r)
	})
}

// selfTest sends requests over 127.0.0.1 and ::1, one through a pretend
// proxy that writes IPv4-mapped hops.
func selfTest(port int) error {
	client := &http.Client{Timeout: 5 * time.Second}
	requests := []struct{ host, xff string }{
		{"127.0.0.1", ""},
		{"::1", ""},
		{"127.0.0.1", "::ffff:203.0.113.9, ::ffff:10.1.2.3"},
	}
	for _, rq := range requests {
		req, err := http.NewRequest("GET", "http://"+net.JoinHostPort(rq.host, strconv.Itoa(port))+"/", nil)
		if err != nil {
			return err
		}
		if rq.xff != "" {
			req.Header.Set("X-Forwarded-For", rq.xff)
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	return nil
}
