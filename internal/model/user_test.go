//go:build linux || freebsd

package model_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"testing"

	"golang.org/x/sys/unix"
)

// The scenarios' second user: sockets made by a child process of this test
// binary that runs as nobody, handed over through a Unix socket. The
// kernels record a socket's user when it is created (Linux's sk_uid,
// FreeBSD's inp_cred), so the sockets stay nobody's once handed over.

// otherUID is the second user: nobody.
const otherUID = 65534

// makerEnv starts the test binary as the socket maker instead of the tests.
const makerEnv = "DUALSTACK_SOCKET_MAKER"

func TestMain(m *testing.M) {
	if os.Getenv(makerEnv) == "1" {
		os.Exit(makeSockets())
	}
	os.Exit(m.Run())
}

// makeSockets is the child: it becomes nobody, then for each request on
// descriptor 3 (a byte for the family, 4 or 6, and one for the type, 't' or
// 'u') makes a batch of sockets and sends them back, until the parent
// closes.
func makeSockets() int {
	if err := unix.Setgid(otherUID); err != nil {
		fmt.Fprintln(os.Stderr, "maker: setgid:", err)
		return 1
	}
	if err := unix.Setuid(otherUID); err != nil {
		fmt.Fprintln(os.Stderr, "maker: setuid:", err)
		return 1
	}
	req := make([]byte, 2)
	for {
		if n, err := unix.Read(3, req); n != 2 || err != nil {
			return 0
		}
		af, typ := unix.AF_INET, unix.SOCK_STREAM
		if req[0] == 6 {
			af = unix.AF_INET6
		}
		if req[1] == 'u' {
			typ = unix.SOCK_DGRAM
		}
		var fds []int
		for range batch {
			fd, err := unix.Socket(af, typ, 0)
			if err != nil {
				break
			}
			fds = append(fds, fd)
		}
		if len(fds) == 0 {
			unix.Write(3, []byte{1})
			continue
		}
		err := unix.Sendmsg(3, []byte{0}, unix.UnixRights(fds...), nil, 0)
		for _, fd := range fds {
			unix.Close(fd)
		}
		// Only now are the sockets the parent's alone: a socket it binds
		// and closes must not live on here.
		if err != nil {
			return 1
		}
		if _, err := unix.Write(3, []byte{0}); err != nil {
			return 1
		}
	}
}

// batch is how many sockets the maker sends at a time: a round trip to
// another process is slow on an emulated CPU.
const batch = 16

// maker is the parent's end of a socket maker.
type maker struct {
	fd    int
	cmd   *exec.Cmd
	spare map[[2]byte][]int // sockets received and not yet used, by request
}

// startMaker starts a socket maker. On Linux the calling goroutine's
// network namespace is the child's: it is forked from this thread.
func startMaker(t testing.TB) *maker {
	t.Helper()
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Our end must not stay open in the child, or it never sees the end.
	unix.CloseOnExec(pair[0])
	theirs := os.NewFile(uintptr(pair[1]), "maker")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), makerEnv+"=1")
	cmd.ExtraFiles = []*os.File{theirs}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("socket maker: %v", err)
	}
	theirs.Close()
	m := &maker{fd: pair[0], cmd: cmd, spare: map[[2]byte][]int{}}
	t.Cleanup(func() {
		for _, fds := range m.spare {
			for _, fd := range fds {
				unix.Close(fd)
			}
		}
		unix.Close(m.fd)
		cmd.Wait()
	})
	return m
}

// socket returns a socket that the second user made.
func (m *maker) socket(af, typ int) (int, error) {
	req := []byte{4, 't'}
	if af == unix.AF_INET6 {
		req[0] = 6
	}
	if typ == unix.SOCK_DGRAM {
		req[1] = 'u'
	}
	key := [2]byte{req[0], req[1]}
	if fds := m.spare[key]; len(fds) > 0 {
		m.spare[key] = fds[1:]
		return fds[0], nil
	}
	if _, err := unix.Write(m.fd, req); err != nil {
		return -1, err
	}
	buf, oob := make([]byte, 1), make([]byte, unix.CmsgSpace(4*batch))
	n, oobn, _, _, err := unix.Recvmsg(m.fd, buf, oob, 0)
	if err != nil || n != 1 {
		return -1, fmt.Errorf("socket maker: %v", err)
	}
	if buf[0] != 0 {
		return -1, errors.New("socket maker could not make the socket")
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return -1, fmt.Errorf("socket maker: %v", err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) == 0 {
		return -1, fmt.Errorf("socket maker: %v", err)
	}
	// Wait until the maker has closed its copies.
	if n, err := unix.Read(m.fd, buf); n != 1 || err != nil {
		return -1, fmt.Errorf("socket maker: %v", err)
	}
	for _, fd := range fds {
		unix.CloseOnExec(fd)
	}
	m.spare[key] = fds[1:]
	return fds[0], nil
}
