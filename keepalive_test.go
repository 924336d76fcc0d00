//go:build unix && !darwin && !ios && !openbsd

package dualstack_test

import "golang.org/x/sys/unix"

// The TCP options that hold a socket's keep-alive idle time, interval and
// count; -1 where the OS has none.
const (
	tcpKeepIdle  = unix.TCP_KEEPIDLE
	tcpKeepIntvl = unix.TCP_KEEPINTVL
	tcpKeepCnt   = unix.TCP_KEEPCNT
)
