package ecosystem

import (
	"bufio"
	"fmt"
	"log"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/cloudflare/tableflip"
	"github.com/dualstack-go/dualstack"
)

// TestMain runs the upgraded process of TestTableflip when tableflip
// starts this binary again.
func TestMain(m *testing.M) {
	if os.Getenv("TABLEFLIP_HAS_PARENT_7DIU3") != "" {
		if err := tableflipChild(); err != nil {
			log.Fatal(err)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// handOverName names the n-th socket of a listener among tableflip's files.
func handOverName(n int) string { return "dualstack-" + strconv.Itoa(n) }

// tableflipChild takes the listener over from its parent, says it is ready
// and answers two connections with its process id.
func tableflipChild() error {
	upg, err := tableflip.New(tableflip.Options{})
	if err != nil {
		return err
	}
	defer upg.Stop()
	var files []*os.File
	for n := 0; ; n++ {
		f, err := upg.Fds.File(handOverName(n))
		if err != nil {
			return err
		}
		if f == nil {
			break
		}
		files = append(files, f)
	}
	ln, err := dualstack.FileListener(files...)
	for _, f := range files {
		f.Close()
	}
	if err != nil {
		return err
	}
	defer ln.Close()
	if err := upg.Ready(); err != nil {
		return err
	}
	for range 2 {
		ln.SetDeadline(time.Now().Add(10 * time.Second))
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		line, _ := bufio.NewReader(c).ReadString('\n')
		fmt.Fprintf(c, "pid %d %s", os.Getpid(), line)
		c.Close()
	}
	return nil
}

// TestTableflip hands a dualstack listener's sockets to a new process with
// cloudflare/tableflip (as named files: a Listener of several sockets is
// not one tableflip.Listener), which rebuilds the listener with
// FileListener; after the upgrade the new process, by its pid, answers
// over 127.0.0.1 and ::1 on the same port.
func TestTableflip(t *testing.T) {
	upg, err := tableflip.New(tableflip.Options{})
	if err != nil {
		t.Skip(err)
	}
	defer upg.Stop()
	ln, err := dualstack.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	files, err := ln.Files()
	if err != nil {
		t.Fatal(err)
	}
	for n, f := range files {
		if err := upg.Fds.AddFile(handOverName(n), f); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	if err := upg.Ready(); err != nil {
		t.Fatal(err)
	}
	// Ready reaches tableflip's loop asynchronously: an Upgrade right
	// after it may be told "not ready yet".
	for try := 0; ; try++ {
		err := upg.Upgrade()
		if err == nil {
			break
		}
		if try == 50 || err.Error() != "process is not ready yet" {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	ln.Close() // the old process stops serving; the new one holds the sockets
	for _, host := range []string{"127.0.0.1", "::1"} {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(host, strconv.Itoa(port)), 5*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", host, err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "hello %s\n", host)
		line, err := bufio.NewReader(c).ReadString('\n')
		c.Close()
		var pid int
		var rest string
		if _, serr := fmt.Sscanf(line, "pid %d %s", &pid, &rest); serr != nil || err != nil || pid == os.Getpid() || pid == 0 {
			t.Errorf("%s: %q, %v: want the new process's answer", host, line, err)
		}
	}
}
