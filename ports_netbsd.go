package dualstack

import (
	"os"

	"golang.org/x/sys/unix"
)

// portRanges reads NetBSD's ephemeral ranges,
// net.inet.ip.anonportmin..anonportmax and
// net.inet6.ip6.anonportmin..anonportmax. TCP and UDP share them.
func (sysSockets) portRanges(proto) (lo4, hi4, lo6, hi6 uint32, err error) {
	var v [4]uint32
	for i, name := range []string{"net.inet.ip.anonportmin", "net.inet.ip.anonportmax",
		"net.inet6.ip6.anonportmin", "net.inet6.ip6.anonportmax"} {
		if v[i], err = unix.SysctlUint32(name); err != nil {
			return 0, 0, 0, 0, os.NewSyscallError("sysctl "+name, err)
		}
	}
	return v[0], v[1], v[2], v[3], nil
}
