package dualstack

import (
	"sync"

	"golang.org/x/sys/unix"
)

// hostFacts are the facts of the OS this package runs on.
var hostFacts = factsFor("darwin")

// sockCloexec is 0: socket(2) takes no SOCK_CLOEXEC on macOS.
const sockCloexec = 0

// mptcpProto is 0: net makes no Multipath TCP sockets on macOS.
const mptcpProto = 0

// listenBacklog returns the backlog passed to listen(2): kern.ipc.somaxconn,
// as Go's net package passes it.
var listenBacklog = sync.OnceValue(func() int {
	n, err := unix.SysctlUint32("kern.ipc.somaxconn")
	if err != nil || n == 0 {
		return defaultBacklog
	}
	return int(min(n, 1<<16-1))
})
