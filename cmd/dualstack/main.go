// Command dualstack reports how this host listens on IPv4 and IPv6, and
// listens like nc -l on both families.
//
// Usage:
//
//	dualstack [doctor] [-json] [-held N] [-binds N]
//	dualstack listen [-mode auto|separate|single] [-udp] [-count N] ADDR
//
// doctor, the default, reports the OS, the state of IPv6, the default of
// IPV6_V6ONLY and where it comes from, the ephemeral port range, whether
// IPv4-mapped sockets work, what net.Listen and dualstack.Listen bind on
// this host and whether both families reach them, and a live run of the
// failure dualstack prevents: it holds IPv4 ports, binds the way a naive
// program does, and counts how often that program's IPv4 clients would
// reach another socket. It exits 0 when the report is complete, whatever
// it found, and 1 when a check could not run.
//
// listen accepts on every socket of ADDR, prints each peer (unmapped) and
// the socket that took it, and echoes what it receives.
//
// Usage errors exit with status 2.
package main

import (
	"fmt"
	"io"
	"os"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

const usage = `usage: dualstack [doctor] [-json] [-held N] [-binds N]
       dualstack listen [-mode auto|separate|single] [-udp] [-count N] ADDR
Run "dualstack COMMAND -h" for a command's flags.
`

// run is the command, with its arguments and streams; it returns the exit
// status.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cmd := "doctor"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "doctor":
		return doctorCmd(args, stdout, stderr)
	case "listen":
		return listenCmd(args, stdout, stderr)
	case "help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "dualstack: unknown command %q\n%s", cmd, usage)
	return 2
}
