// Package localhosttest shows the change that makes tests which listen on
// "localhost:0" stop failing once in a few thousand runs: listen with
// dualstack.Listen instead of net.Listen (or httptest's default listener).
//
// net.Listen("tcp", "localhost:0") binds whatever the resolver answers
// first, often only 127.0.0.1, and on macOS and several BSDs a port picked
// for an IPv6 socket may already be held on IPv4 by another process, which
// then answers the test's connections. dualstack.Listen binds 127.0.0.1 and
// ::1 on one port that no other socket holds on either family.
package localhosttest

import (
	"fmt"
	"net/http"
)

// Greeter is the handler under test.
func Greeter() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello, %s", r.URL.Query().Get("name"))
	})
}
