package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/dualstack-go/dualstack"
)

// TestMain runs the command itself when a test starts it as a child.
func TestMain(m *testing.M) {
	if os.Getenv("SOCKETACTIVATION_CHILD") == "1" {
		os.Args = append(os.Args[:1], "-conns", "2")
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestActivation hands a listener's sockets to a child process as systemd
// does (descriptors 3 and 4, LISTEN_FDS=2), closes its own, and requires
// the child, by its process id, to answer over 127.0.0.1 and ::1.
func TestActivation(t *testing.T) {
	ln, err := dualstack.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	files, err := ln.Files()
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close() // from now on only the child holds the sockets

	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "SOCKETACTIVATION_CHILD=1", fmt.Sprintf("LISTEN_FDS=%d", len(files)))
	cmd.ExtraFiles = files
	var logs strings.Builder
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		f.Close()
	}
	defer func() {
		done := make(chan error)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("child: %v\n%s", err, logs.String())
			}
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			t.Errorf("child did not exit\n%s", logs.String())
		}
	}()
	for _, host := range []string{"127.0.0.1", "::1"} {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(host, fmt.Sprint(port)), 5*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", host, err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "token-%s\n", host)
		line, err := bufio.NewReader(c).ReadString('\n')
		c.Close()
		want := fmt.Sprintf("pid %d: token-%s from %s", cmd.Process.Pid, host, net.JoinHostPort(host, ""))
		want = strings.TrimSuffix(want, ":") // the client's port follows
		if err != nil || !strings.HasPrefix(line, want) {
			t.Errorf("%s: got %q, %v; want %q...", host, line, err, want)
		}
	}
}
