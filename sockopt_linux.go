package dualstack

import (
	"os"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// hostFacts are the facts of the OS this package runs on.
var hostFacts = factsFor("linux")

// sockCloexec is the socket type flag that makes a descriptor close on
// exec, where socket(2) takes one.
const sockCloexec = unix.SOCK_CLOEXEC

// mptcpProto is the protocol of a Multipath TCP socket (IPPROTO_MPTCP).
const mptcpProto = unix.IPPROTO_MPTCP

// listenBacklog returns the backlog passed to listen(2): net.core.somaxconn,
// as Go's net package passes it.
var listenBacklog = sync.OnceValue(func() int {
	b, err := os.ReadFile("/proc/sys/net/core/somaxconn")
	if err != nil {
		return defaultBacklog
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n <= 0 {
		return defaultBacklog
	}
	// Kernels before 4.1 keep the backlog in 16 bits.
	return min(n, 1<<16-1)
})
