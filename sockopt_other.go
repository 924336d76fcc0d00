//go:build !linux && !darwin

package dualstack

import "runtime"

// hostFacts are the facts of the OS this package runs on.
var hostFacts = factsFor(runtime.GOOS)

// sockCloexec is 0: the descriptor is marked close-on-exec after socket(2).
const sockCloexec = 0

// mptcpProto is 0: no Multipath TCP sockets, as in net.
const mptcpProto = 0

// listenBacklog returns the backlog passed to listen(2): SOMAXCONN, which
// the BSDs and illumos also cap the backlog at unless tuned.
func listenBacklog() int { return defaultBacklog }
