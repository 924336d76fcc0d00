package dualstack

import "golang.org/x/sys/unix"

// sharingOptions are the socket options, besides SO_REUSEADDR, that let
// another socket share a bound port.
var sharingOptions = []sockOption{{unix.SO_REUSEPORT, "SO_REUSEPORT"}, {unix.SO_REUSEPORT_LB, "SO_REUSEPORT_LB"}}
