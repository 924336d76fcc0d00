package dualstack_test

// OpenBSD has no per-socket keep-alive times: the tests check only that
// keep-alive is on or off.
const (
	tcpKeepIdle  = -1
	tcpKeepIntvl = -1
	tcpKeepCnt   = -1
)
