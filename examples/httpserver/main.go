// Command httpserver serves HTTP on both address families with one
// dualstack.Listen call, in place of net.Listen or http.ListenAndServe.
//
// Usage:
//
//	go run ./examples/httpserver                # serve on :8080
//	go run ./examples/httpserver -addr :9000
//	go run ./examples/httpserver -selftest      # serve on :0, GET itself over 127.0.0.1 and ::1, exit
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/dualstack-go/dualstack"
)

func main() {
	addr := flag.String("addr", ":8080", "address to listen on")
	selftest := flag.Bool("selftest", false, "listen on :0, request / over 127.0.0.1 and ::1, and exit")
	flag.Parse()
	if *selftest {
		*addr = ":0"
	}

	ln, err := dualstack.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("serving on %v (%v mode)", ln.Addrs(), ln.Mode())

	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		// In Separate mode r.RemoteAddr is in the client's own family:
		// 127.0.0.1:p, never [::ffff:127.0.0.1]:p.
		fmt.Fprintf(w, "hello, %s\n", r.RemoteAddr)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	if !*selftest {
		log.Fatal(srv.Serve(ln))
	}
	go srv.Serve(ln)
	defer srv.Close()

	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	client := &http.Client{Timeout: 5 * time.Second}
	for _, host := range []string{"127.0.0.1", "::1"} {
		resp, err := client.Get("http://" + net.JoinHostPort(host, port) + "/")
		if err != nil {
			log.Fatalf("GET over %s: %v", host, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Printf("%-9s -> %s", host, body)
	}
}
