// Command vmtest runs packages' tests on a FreeBSD kernel under QEMU:
//
//	go run ./internal/vm/cmd/vmtest [flags] [packages] [-- test flags]
//
// for example
//
//	go run ./internal/vm/cmd/vmtest -sysctl net.inet6.ip6.v6only=0 ./ ./internal/model -- -test.v
//
// It cross-compiles each package's tests, boots the kernel (flag -kernel,
// or $DUALSTACK_FREEBSD_KERNEL, or ../shared/freebsd-vm/kernel.gz) with a
// root image holding them, prints the console, and exits 1 if any test
// binary failed, panicked or timed out. Lines the tests print that start
// with "FIGURE " are repeated at the end. Without a kernel, QEMU or makefs
// it says so and exits 0, or 1 where DUALSTACK_CI is set.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dualstack-go/dualstack/internal/vm"
	"github.com/dualstack-go/dualstack/internal/vm/guest"
)

type sysctls []guest.Sysctl

func (s *sysctls) String() string { return fmt.Sprint(*s) }

func (s *sysctls) Set(v string) error {
	name, value, ok := strings.Cut(v, "=")
	n, err := strconv.Atoi(value)
	if !ok || err != nil {
		return fmt.Errorf("want name=integer, got %q", v)
	}
	*s = append(*s, guest.Sysctl{Name: name, Value: n})
	return nil
}

type strs []string

func (s *strs) String() string     { return strings.Join(*s, ",") }
func (s *strs) Set(v string) error { *s = append(*s, v); return nil }

func main() {
	var cfg vm.Config
	var sc sysctls
	var env strs
	flag.Var(&sc, "sysctl", "set an integer sysctl before the tests (name=value; repeatable)")
	flag.Var(&env, "env", "add NAME=value to the tests' environment (repeatable)")
	flag.StringVar(&cfg.Kernel, "kernel", "", "FreeBSD kernel to boot (default $"+vm.KernelEnv+", then ../shared/freebsd-vm/kernel.gz)")
	flag.DurationVar(&cfg.Timeout, "timeout", 10*time.Minute, "bound on the whole boot")
	flag.IntVar(&cfg.MemoryMiB, "mem", 1024, "guest memory in MiB")
	flag.IntVar(&cfg.CPUs, "smp", 1, "virtual CPUs (more than 1 boots QEMU's slower pc machine)")
	flag.IntVar(&cfg.Repeat, "repeat", 1, "run each test binary this many times in the one boot (rounds of benchmarks)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: vmtest [flags] [packages] [-- test flags]\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	args := flag.Args()
	for i, a := range args {
		if a == "--" {
			cfg.Args = args[i+1:]
			args = args[:i]
			break
		}
	}
	cfg.Packages = args
	if len(cfg.Packages) == 0 {
		cfg.Packages = []string{"."}
	}
	cfg.Sysctls = sc
	cfg.Env = env
	if os.Getenv(guest.RequiredEnv) != "" {
		cfg.Env = append(cfg.Env, guest.RequiredEnv+"="+os.Getenv(guest.RequiredEnv))
	}
	cfg.Output = os.Stdout

	res, err := vm.Run(context.Background(), cfg)
	if errors.Is(err, vm.ErrUnavailable) {
		if os.Getenv(guest.RequiredEnv) != "" {
			fmt.Fprintf(os.Stderr, "vmtest: %v (%s is set: failing)\n", err, guest.RequiredEnv)
			os.Exit(1)
		}
		fmt.Fprintf(os.Stderr, "vmtest: skipped: %v\n", err)
		return
	}
	if res != nil {
		fmt.Printf("vmtest: the VM ran %v (wall clock)\n", res.Boot.Round(time.Millisecond))
		for _, name := range slices.Sorted(maps.Keys(res.Tests)) {
			if c := res.Tests[name]; len(c) > 0 {
				fmt.Printf("vmtest: %s: top-level tests: %d passed, %d skipped, %d failed\n", name, c["PASS"], c["SKIP"], c["FAIL"])
			}
		}
		for _, f := range res.Figures {
			fmt.Println(f)
		}
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "vmtest: %v\n", err)
		os.Exit(1)
	}
	fmt.Println("vmtest: ok")
}
