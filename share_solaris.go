package dualstack

// sharingOptions are the socket options, besides SO_REUSEADDR, that let
// another socket share a bound port: none on illumos and Solaris.
var sharingOptions []sockOption
