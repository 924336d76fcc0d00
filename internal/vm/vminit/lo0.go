//go:build freebsd

package main

import (
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

func unsafePointer[T any](p *T) unsafe.Pointer { return unsafe.Pointer(p) }

// ifreq is FreeBSD's struct ifreq with the flags member of its union.
type ifreq struct {
	name      [unix.IFNAMSIZ]byte
	flags     int16
	flagshigh int16
	_         [12]byte
}

// inAliasreq is FreeBSD's struct in_aliasreq.
type inAliasreq struct {
	name      [unix.IFNAMSIZ]byte
	addr      unix.RawSockaddrInet4
	broadaddr unix.RawSockaddrInet4
	mask      unix.RawSockaddrInet4
	vhid      int32
}

// siocAIFADDR is _IOW('i', 43, struct in_aliasreq).
const siocAIFADDR = 0x80000000 | uintptr(unsafe.Sizeof(inAliasreq{}))<<16 | 'i'<<8 | 43

// loopbackUp brings lo0 up and gives it 127.0.0.1/8, as
// "ifconfig lo0 inet 127.0.0.1/8 up" does (::1 and fe80::1%lo0 follow),
// and 127.0.0.2/32: a second local IPv4 address, as every 127/8 address is
// on Linux, for tests that need one no loopback guard holds.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
	if err != nil {
		return os.NewSyscallError("socket", err)
	}
	defer unix.Close(fd)
	var ifr ifreq
	copy(ifr.name[:], "lo0")
	if err := ioctl(fd, unix.SIOCGIFFLAGS, unsafe.Pointer(&ifr)); err != nil {
		return os.NewSyscallError("ioctl SIOCGIFFLAGS", err)
	}
	ifr.flags |= unix.IFF_UP
	if err := ioctl(fd, unix.SIOCSIFFLAGS, unsafe.Pointer(&ifr)); err != nil {
		return os.NewSyscallError("ioctl SIOCSIFFLAGS", err)
	}
	var ar inAliasreq
	copy(ar.name[:], "lo0")
	sin := func(a [4]byte) unix.RawSockaddrInet4 {
		return unix.RawSockaddrInet4{Len: unix.SizeofSockaddrInet4, Family: unix.AF_INET, Addr: a}
	}
	for _, a := range []struct{ addr, mask [4]byte }{
		{[4]byte{127, 0, 0, 1}, [4]byte{255, 0, 0, 0}},
		{[4]byte{127, 0, 0, 2}, [4]byte{255, 255, 255, 255}},
	} {
		ar.addr, ar.mask = sin(a.addr), sin(a.mask)
		if err := ioctl(fd, siocAIFADDR, unsafe.Pointer(&ar)); err != nil {
			return os.NewSyscallError("ioctl SIOCAIFADDR", err)
		}
	}
	return nil
}

func ioctl(fd int, req uintptr, arg unsafe.Pointer) error {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(arg))
	if errno != 0 {
		return errno
	}
	return nil
}
