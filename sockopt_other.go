//go:build !linux && !darwin

package dualstack

import "runtime"

// hostFacts are the facts of the OS this package runs on.
var hostFacts = factsFor(runtime.GOOS)

// listenBacklog returns the backlog passed to listen(2): SOMAXCONN, which
// the BSDs and illumos also cap the backlog at unless tuned.
func listenBacklog() int { return defaultBacklog }
