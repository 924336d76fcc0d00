package dualstack_test

import "golang.org/x/sys/unix"

// The TCP options that hold a socket's keep-alive idle time, interval and
// count; macOS calls the first TCP_KEEPALIVE.
const (
	tcpKeepIdle  = unix.TCP_KEEPALIVE
	tcpKeepIntvl = unix.TCP_KEEPINTVL
	tcpKeepCnt   = unix.TCP_KEEPCNT
)
