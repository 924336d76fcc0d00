//go:build freebsd

// Command vminit is /sbin/init of the harness's FreeBSD VM (package vm). It
// is the only program on the machine: it mounts a tmpfs on /tmp, brings lo0
// up with 127.0.0.1/8, sets the sysctls that the run asks for, runs each
// test binary in its package's directory, prints one line with each exit
// status on the console, and powers the machine off.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"time"

	"github.com/dualstack-go/dualstack/internal/vm/guest"
	"golang.org/x/sys/unix"
)

func main() {
	console()
	status := run()
	fmt.Printf("%s %d\n", guest.DoneLine, status)
	os.Stdout.Sync()
	poweroff()
}

// run does the work and returns the status that the done line reports:
// the first failing binary's, or 0.
func run() int {
	var cfg guest.Config
	b, err := os.ReadFile(guest.ConfigPath)
	if err == nil {
		err = json.Unmarshal(b, &cfg)
	}
	if err != nil {
		fmt.Printf("vminit: config: %v\n", err)
		return 125
	}
	if err := mountTmp(); err != nil {
		fmt.Printf("vminit: mount /tmp: %v\n", err)
		return 125
	}
	if err := loopbackUp(); err != nil {
		fmt.Printf("vminit: lo0: %v\n", err)
		return 125
	}
	for _, s := range cfg.Sysctls {
		if _, err := guest.SetSysctlInt(s.Name, s.Value); err != nil {
			fmt.Printf("vminit: %v\n", err)
			return 125
		}
	}
	status := 0
	for i, r := range cfg.Runs {
		fmt.Printf("%s %s %d\n", guest.StartLine, r.Name, i+1)
		code := runTest(r, cfg.Env)
		fmt.Printf("%s %s %d\n", guest.RunLine, r.Name, code)
		if code != 0 && status == 0 {
			status = code
		}
	}
	return status
}

func runTest(r guest.Run, env []string) int {
	cmd := exec.Command(r.Binary, r.Args...)
	cmd.Dir = r.Dir
	cmd.Env = append([]string{
		"PATH=/bin:/sbin",
		"HOME=/tmp",
		"TMPDIR=/tmp",
		guest.Env + "=freebsd",
	}, env...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stdout
	start := time.Now()
	err := cmd.Run()
	fmt.Printf("vminit: %s ran %v (guest clock)\n", r.Name, time.Since(start).Round(time.Millisecond))
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() > 0 {
		return ee.ExitCode()
	}
	fmt.Printf("vminit: %s: %v\n", r.Name, err)
	return 126
}

// console makes the system console the standard input, output and error.
func console() {
	fd, err := unix.Open("/dev/console", unix.O_RDWR, 0)
	if err != nil {
		return // nothing to report to
	}
	for i := range 3 {
		unix.Dup2(fd, i)
	}
	if fd > 2 {
		unix.Close(fd)
	}
}

// mountTmp mounts a tmpfs on /tmp with nmount(2).
func mountTmp() error {
	var iov []unix.Iovec
	for _, s := range []string{"fstype", "tmpfs", "fspath", "/tmp"} {
		b := append([]byte(s), 0)
		v := unix.Iovec{Base: &b[0]}
		v.SetLen(len(b))
		iov = append(iov, v)
	}
	_, _, errno := unix.Syscall(unix.SYS_NMOUNT, uintptr(unsafePointer(&iov[0])), uintptr(len(iov)), 0)
	if errno != 0 {
		return os.NewSyscallError("nmount", errno)
	}
	return nil
}

// poweroff stops the machine: reboot(2) with RB_POWEROFF, and RB_NOSYNC
// since the root image is a throwaway snapshot.
func poweroff() {
	const rbPoweroff, rbNosync = 0x4000, 0x4
	unix.Syscall(unix.SYS_REBOOT, rbPoweroff|rbNosync, 0, 0)
	// Not reached; if it is, hang rather than let init exit (a panic).
	for {
		time.Sleep(time.Hour)
	}
}
