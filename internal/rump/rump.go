//go:build rump && linux && cgo

// Package rump runs sockets on NetBSD's network stack built as a rump
// kernel: NetBSD's own kernel code for sockets, IPv4 and IPv6, as Linux
// shared libraries, in this process (../shared/netbsd-rump). Only tests
// use it, built with the tag rump; the command rumptest unpacks the
// libraries and passes their location to cgo (CGO_CFLAGS, CGO_LDFLAGS).
//
// The rump system calls take NetBSD's ABI: its constants and its
// sockaddrs, which start with a length byte. This package speaks it and
// returns the host's errno values (syscall.Errno), as the host's socket
// layer does, so that errors.Is(err, syscall.EADDRINUSE) holds.
//
// Every call may be made from any goroutine; the rump kernel gives each
// host thread that calls in a light-weight process of its own.
package rump

/*
#include <sys/types.h>
#include <stdint.h>
#include <errno.h>
#include <string.h>
#include <poll.h>
#include <rump/rump.h>
#include <rump/rump_syscalls.h>
#include <rump/rumperrno2host.h>

// Each wrapper returns the call's result, or minus the host's errno.
static int ds_err(long r) { return r < 0 ? -rump_errno2host(errno) : (int)r; }

static int ds_init(void) { int r = rump_init(); return r ? -rump_errno2host(r) : 0; }
static int ds_socket(int d, int t) { return ds_err(rump_sys_socket(d, t, 0)); }
static int ds_close(int fd) { return ds_err(rump_sys_close(fd)); }
static int ds_bind(int fd, void *sa, int n) { return ds_err(rump_sys_bind(fd, (const struct sockaddr *)sa, n)); }
static int ds_connect(int fd, void *sa, int n) { return ds_err(rump_sys_connect(fd, (const struct sockaddr *)sa, n)); }
static int ds_listen(int fd, int b) { return ds_err(rump_sys_listen(fd, b)); }
static int ds_accept(int fd, void *sa, int *n) {
	socklen_t l = *n;
	int r = ds_err(rump_sys_accept(fd, (struct sockaddr *)sa, &l));
	*n = l;
	return r;
}
static int ds_getsockname(int fd, void *sa, int *n) {
	socklen_t l = *n;
	int r = ds_err(rump_sys_getsockname(fd, (struct sockaddr *)sa, &l));
	*n = l;
	return r;
}
static int ds_setint(int fd, int level, int opt, int v) { return ds_err(rump_sys_setsockopt(fd, level, opt, &v, sizeof v)); }
static int ds_getint(int fd, int level, int opt, int *v) {
	socklen_t l = sizeof *v;
	return ds_err(rump_sys_getsockopt(fd, level, opt, v, &l));
}
static int ds_sendto(int fd, void *b, int n, void *sa, int sl) {
	return ds_err(rump_sys_sendto(fd, b, n, 0, (const struct sockaddr *)sa, sl));
}
static int ds_recvfrom(int fd, void *b, int n, int flags, void *sa, int *sl) {
	socklen_t l = *sl;
	int r = ds_err(rump_sys_recvfrom(fd, b, n, flags, (struct sockaddr *)sa, &l));
	*sl = l;
	return r;
}
static int ds_linger0(int fd) { int l[2] = {1, 0}; return ds_err(rump_sys_setsockopt(fd, 0xffff, 0x80, l, sizeof l)); }
// ds_connect_start starts a non-blocking connect; *fl gets the flags to
// restore. 1: connected, 0: under way, <0: -errno.
static int ds_connect_start(int fd, void *sa, int n, int *fl) {
	*fl = rump_sys_fcntl(fd, 3, 0); // F_GETFL
	if (*fl < 0) return ds_err(-1);
	if (rump_sys_fcntl(fd, 4, *fl | 0x4) < 0) return ds_err(-1); // F_SETFL O_NONBLOCK
	if (rump_sys_connect(fd, (const struct sockaddr *)sa, n) == 0) return 1;
	if (errno == 36) return 0; // EINPROGRESS
	return ds_err(-1);
}
// ds_connect_done asks without waiting whether the connect ended: 1 with
// success, 0 not yet, <0: -errno.
static int ds_connect_done(int fd) {
	struct pollfd p = { fd, 0x4, 0 }; // POLLOUT
	int r = rump_sys_poll(&p, 1, 0);
	if (r <= 0) return ds_err(r);
	int soerr = 0; socklen_t l = sizeof soerr;
	if (rump_sys_getsockopt(fd, 0xffff, 0x1007, &soerr, &l) < 0) return ds_err(-1); // SO_ERROR
	return soerr ? -rump_errno2host(soerr) : 1;
}
static void ds_setfl(int fd, int fl) { rump_sys_fcntl(fd, 4, fl); }
static int ds_write(int fd, void *b, int n) { return ds_err(rump_sys_write(fd, b, n)); }
static int ds_read(int fd, void *b, int n) { return ds_err(rump_sys_read(fd, b, n)); }
static int ds_poll(struct pollfd *fds, int n, int ms) { return ds_err(rump_sys_poll(fds, n, ms)); }
static int ds_sysctl(int *mib, int n, int *old, int *new) {
	size_t ol = sizeof *old;
	return ds_err(rump_sys___sysctl(mib, n, old, &ol, new, new ? sizeof *new : 0));
}
*/
import "C"

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// NetBSD's values, which the rump calls take.
const (
	afInet       = 2
	afInet6      = 24
	sockStream   = 1
	sockDgram    = 2
	solSocket    = 0xffff
	soReuseAddr  = 0x4
	soReusePort  = 0x200
	ipprotoIPv6  = 41
	ipv6V6Only   = 27
	msgDontWait  = 0x80
	pollIn       = 0x1
	sockaddr4Len = 16
	sockaddr6Len = 28
)

// Sysctl MIBs.
var (
	MIBAnonPortMin  = []int{4, 2, 0, 10}   // net.inet.ip.anonportmin
	MIBAnonPortMax  = []int{4, 2, 0, 11}   // net.inet.ip.anonportmax
	MIB6AnonPortMin = []int{4, 24, 41, 28} // net.inet6.ip6.anonportmin
	MIB6AnonPortMax = []int{4, 24, 41, 29} // net.inet6.ip6.anonportmax
	MIBV6Only       = []int{4, 24, 41, 24} // net.inet6.ip6.v6only
)

var (
	initOnce sync.Once
	initErr  error
)

// Init starts the rump kernel, once per process. Its lo0 has 127.0.0.1
// and ::1.
func Init() error {
	initOnce.Do(func() {
		if r := C.ds_init(); r < 0 {
			initErr = fmt.Errorf("rump_init: %w", syscall.Errno(-r))
		}
	})
	return initErr
}

func result(call string, r C.int) (int, error) {
	if r < 0 {
		return 0, os.NewSyscallError(call, syscall.Errno(-r))
	}
	return int(r), nil
}

// Socket makes a socket: family 4 or 6, TCP or (udp) UDP.
func Socket(family int, udp bool) (int, error) {
	d, t := afInet, sockStream
	if family == 6 {
		d = afInet6
	}
	if udp {
		t = sockDgram
	}
	return result("socket", C.ds_socket(C.int(d), C.int(t)))
}

// Close closes fd.
func Close(fd int) error {
	_, err := result("close", C.ds_close(C.int(fd)))
	return err
}

func setInt(fd, level, opt int, on bool) error {
	v := 0
	if on {
		v = 1
	}
	_, err := result("setsockopt", C.ds_setint(C.int(fd), C.int(level), C.int(opt), C.int(v)))
	return err
}

func getInt(fd, level, opt int) (int, error) {
	var v C.int
	_, err := result("getsockopt", C.ds_getint(C.int(fd), C.int(level), C.int(opt), &v))
	return int(v), err
}

// SetV6Only sets IPV6_V6ONLY.
func SetV6Only(fd int, on bool) error { return setInt(fd, ipprotoIPv6, ipv6V6Only, on) }

// SetReuseAddr sets SO_REUSEADDR.
func SetReuseAddr(fd int, on bool) error { return setInt(fd, solSocket, soReuseAddr, on) }

// SetReusePort sets SO_REUSEPORT.
func SetReusePort(fd int, on bool) error { return setInt(fd, solSocket, soReusePort, on) }

// ReuseAddr and ReusePort read the options back.
func ReuseAddr(fd int) (bool, error) {
	v, err := getInt(fd, solSocket, soReuseAddr)
	return v != 0, err
}
func ReusePort(fd int) (bool, error) {
	v, err := getInt(fd, solSocket, soReusePort)
	return v != 0, err
}

// sockaddr is NetBSD's form of a: length, family, port, address.
func sockaddr(a netip.AddrPort) []byte {
	if a.Addr().Is4() {
		b := make([]byte, sockaddr4Len)
		b[0], b[1] = sockaddr4Len, afInet
		binary.BigEndian.PutUint16(b[2:], a.Port())
		ip := a.Addr().As4()
		copy(b[4:], ip[:])
		return b
	}
	b := make([]byte, sockaddr6Len)
	b[0], b[1] = sockaddr6Len, afInet6
	binary.BigEndian.PutUint16(b[2:], a.Port())
	ip := a.Addr().As16()
	copy(b[8:], ip[:])
	return b
}

func parseSockaddr(b []byte) (netip.AddrPort, error) {
	if len(b) < 2 {
		return netip.AddrPort{}, errors.New("rump: short sockaddr")
	}
	port := binary.BigEndian.Uint16(b[2:])
	switch b[1] {
	case afInet:
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), port), nil
	case afInet6:
		return netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[8:24])), port), nil
	}
	return netip.AddrPort{}, fmt.Errorf("rump: sockaddr of family %d", b[1])
}

func ptr(b []byte) unsafe.Pointer { return unsafe.Pointer(&b[0]) }

// Bind binds fd to a.
func Bind(fd int, a netip.AddrPort) error {
	sa := sockaddr(a)
	_, err := result("bind", C.ds_bind(C.int(fd), ptr(sa), C.int(len(sa))))
	return err
}

// Connect connects fd to a, waiting for the answer.
func Connect(fd int, a netip.AddrPort) error {
	sa := sockaddr(a)
	_, err := result("connect", C.ds_connect(C.int(fd), ptr(sa), C.int(len(sa))))
	return err
}

// ConnectWait connects fd to a, waiting at most ms milliseconds; a
// connection not answered in time fails with ETIMEDOUT. The wait is ours:
// a poll with a timeout on the rump stack can outlast it by far (seen:
// one that never returned).
func ConnectWait(fd int, a netip.AddrPort, ms int) error {
	sa := sockaddr(a)
	var fl C.int
	r, err := result("connect", C.ds_connect_start(C.int(fd), ptr(sa), C.int(len(sa)), &fl))
	defer C.ds_setfl(C.int(fd), fl)
	for deadline := time.Now().Add(time.Duration(ms) * time.Millisecond); err == nil && r == 0; {
		if time.Now().After(deadline) {
			return &os.SyscallError{Syscall: "connect", Err: syscall.ETIMEDOUT}
		}
		time.Sleep(200 * time.Microsecond)
		r, err = result("connect", C.ds_connect_done(C.int(fd)))
	}
	return err
}

// Listen starts listening.
func Listen(fd, backlog int) error {
	_, err := result("listen", C.ds_listen(C.int(fd), C.int(backlog)))
	return err
}

// Accept accepts a connection, waiting for one.
func Accept(fd int) (int, netip.AddrPort, error) {
	sa := make([]byte, 128)
	n := C.int(len(sa))
	nfd, err := result("accept", C.ds_accept(C.int(fd), ptr(sa), &n))
	if err != nil {
		return -1, netip.AddrPort{}, err
	}
	peer, err := parseSockaddr(sa[:n])
	return nfd, peer, err
}

// Name returns the address fd is bound to.
func Name(fd int) (netip.AddrPort, error) {
	sa := make([]byte, 128)
	n := C.int(len(sa))
	if _, err := result("getsockname", C.ds_getsockname(C.int(fd), ptr(sa), &n)); err != nil {
		return netip.AddrPort{}, err
	}
	return parseSockaddr(sa[:n])
}

// SendTo sends a datagram to a.
func SendTo(fd int, b []byte, a netip.AddrPort) error {
	sa := sockaddr(a)
	_, err := result("sendto", C.ds_sendto(C.int(fd), ptr(b), C.int(len(b)), ptr(sa), C.int(len(sa))))
	return err
}

// RecvFrom receives a datagram without waiting.
func RecvFrom(fd int, b []byte) (int, netip.AddrPort, error) {
	sa := make([]byte, 128)
	n := C.int(len(sa))
	got, err := result("recvfrom", C.ds_recvfrom(C.int(fd), ptr(b), C.int(len(b)), msgDontWait, ptr(sa), &n))
	if err != nil {
		return 0, netip.AddrPort{}, err
	}
	src, err := parseSockaddr(sa[:n])
	return got, src, err
}

// SetLinger0 makes close reset the connection: no TIME_WAIT.
func SetLinger0(fd int) error {
	_, err := result("setsockopt", C.ds_linger0(C.int(fd)))
	return err
}

// Write writes b to a connected socket.
func Write(fd int, b []byte) (int, error) {
	return result("write", C.ds_write(C.int(fd), ptr(b), C.int(len(b))))
}

// Read reads from a connected socket, waiting for data.
func Read(fd int, b []byte) (int, error) {
	return result("read", C.ds_read(C.int(fd), ptr(b), C.int(len(b))))
}

// Readable reports which of fds are readable within ms milliseconds,
// polling without a timeout in the stack (see ConnectWait).
func Readable(fds []int, ms int) ([]bool, error) {
	pfds := make([]C.struct_pollfd, len(fds))
	for i, fd := range fds {
		pfds[i].fd, pfds[i].events = C.int(fd), pollIn
	}
	for deadline := time.Now().Add(time.Duration(ms) * time.Millisecond); ; time.Sleep(200 * time.Microsecond) {
		n, err := result("poll", C.ds_poll(&pfds[0], C.int(len(pfds)), 0))
		if err != nil {
			return nil, err
		}
		if n > 0 || time.Now().After(deadline) {
			break
		}
	}
	ready := make([]bool, len(fds))
	for i := range pfds {
		ready[i] = pfds[i].revents&pollIn != 0
	}
	return ready, nil
}

// Sysctl sets an integer sysctl and returns its old value.
func Sysctl(mib []int, value int) (int, error) {
	cm := make([]C.int, len(mib))
	for i, v := range mib {
		cm[i] = C.int(v)
	}
	var old C.int
	nv := C.int(value)
	_, err := result("sysctl", C.ds_sysctl(&cm[0], C.int(len(cm)), &old, &nv))
	return int(old), err
}

// SysctlValue reads an integer sysctl.
func SysctlValue(mib []int) (int, error) {
	cm := make([]C.int, len(mib))
	for i, v := range mib {
		cm[i] = C.int(v)
	}
	var old C.int
	_, err := result("sysctl", C.ds_sysctl(&cm[0], C.int(len(cm)), &old, nil))
	return int(old), err
}
