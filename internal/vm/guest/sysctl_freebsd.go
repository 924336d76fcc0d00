package guest

import (
	"encoding/binary"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mib returns the numeric name of a sysctl, through the kernel's
// name-to-number service (the MIB {0, 3}), as sysctlnametomib(3) does.
func mib(name string) ([]int32, error) {
	var buf [24]int32 // CTL_MAXNAME
	size := uintptr(len(buf) * 4)
	query := [2]int32{0, 3}
	nb := []byte(name)
	if err := sysctl(query[:], unsafe.Pointer(&buf[0]), &size, unsafe.Pointer(&nb[0]), uintptr(len(nb))); err != nil {
		return nil, fmt.Errorf("sysctl %s: %w", name, err)
	}
	return buf[:size/4], nil
}

func sysctl(m []int32, old unsafe.Pointer, oldLen *uintptr, new unsafe.Pointer, newLen uintptr) error {
	_, _, errno := unix.Syscall6(unix.SYS___SYSCTL, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)),
		uintptr(old), uintptr(unsafe.Pointer(oldLen)), uintptr(new), newLen)
	if errno != 0 {
		return os.NewSyscallError("__sysctl", errno)
	}
	return nil
}

// SysctlInt returns the value of an integer sysctl.
func SysctlInt(name string) (int, error) {
	return swapInt(name, nil)
}

// SetSysctlInt sets an integer sysctl and returns its former value.
func SetSysctlInt(name string, v int) (old int, err error) {
	n := int32(v)
	return swapInt(name, &n)
}

func swapInt(name string, v *int32) (int, error) {
	m, err := mib(name)
	if err != nil {
		return 0, err
	}
	var out [4]byte
	size := uintptr(len(out))
	var newp unsafe.Pointer
	var newLen uintptr
	if v != nil {
		newp, newLen = unsafe.Pointer(v), 4
	}
	if err := sysctl(m, unsafe.Pointer(&out[0]), &size, newp, newLen); err != nil {
		return 0, fmt.Errorf("sysctl %s: %w", name, err)
	}
	if size != 4 {
		return 0, fmt.Errorf("sysctl %s: %d bytes, not an int", name, size)
	}
	return int(int32(binary.NativeEndian.Uint32(out[:]))), nil
}
