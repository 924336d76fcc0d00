package main

import (
	"os/exec"
	"regexp"
	"testing"
)

// TestSelftest runs the example as a user would: both families are
// echoed, and the server logs each connection before the program exits.
func TestSelftest(t *testing.T) {
	out, err := exec.Command("go", "run", ".", "-selftest").CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{
		`echoed: hello over 127\.0\.0\.1\n`,
		`echoed: hello over ::1\n`,
		`127\.0\.0\.1:\d+: echoed 21 bytes\n`,
		`\[::1\]:\d+: echoed 15 bytes\n`,
	} {
		if !regexp.MustCompile(want).Match(out) {
			t.Errorf("no line matching %q in:\n%s", want, out)
		}
	}
}
