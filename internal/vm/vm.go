// Package vm runs Go test binaries on a real FreeBSD kernel under QEMU. It
// cross-compiles each package's tests (GOOS=freebsd GOARCH=amd64
// CGO_ENABLED=0), builds a UFS root image with makefs holding them, their
// package sources and the harness's own init (internal/vm/vminit), boots
// the kernel with QEMU, streams the console and reads each binary's exit
// status from the lines init prints. Tests inside the VM use package guest.
//
// The kernel is a FreeBSD kernel that boots from QEMU's -kernel through its
// PVH entry point and mounts its root from the first virtio disk, such as
// ../shared/freebsd-vm/kernel.gz of this project's workspace.
package vm

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/dualstack-go/dualstack/internal/vm/guest"
)

// KernelEnv names the kernel to boot (a kernel or kernel.gz file).
const KernelEnv = "DUALSTACK_FREEBSD_KERNEL"

// AccelEnv chooses QEMU's accelerator: "kvm" or "tcg". Without it the
// harness uses KVM where the host CPU has hardware virtualization and
// TCG elsewhere.
const AccelEnv = "DUALSTACK_VM_ACCEL"

// ErrUnavailable is wrapped by the errors of Run that say the VM cannot be
// booted here at all: no kernel, no QEMU or no makefs.
var ErrUnavailable = errors.New("vm: unavailable")

// Config is one boot.
type Config struct {
	// Packages are the packages whose tests run, in order, as go list
	// names them ("./", "./internal/model", import paths).
	Packages []string
	// Args are given to every test binary ("-test.run=...").
	Args []string
	// Sysctls are set by init before the first binary runs.
	Sysctls []guest.Sysctl
	// Env is added to the environment of the test binaries.
	Env []string
	// Kernel is the kernel to boot; "" means KernelEnv, then
	// DefaultKernel.
	Kernel string
	// Timeout bounds the whole boot; zero means 10 minutes.
	Timeout time.Duration
	// MemoryMiB is the guest's memory; zero means 1024.
	MemoryMiB int
	// Output receives the console, line by line; nil discards it.
	Output io.Writer
	// Dir is the module directory the go commands run in; "" means the
	// current directory.
	Dir string
	// Repeat runs each test binary this many times in the one boot, one
	// after another: rounds of benchmarks. Zero means once.
	Repeat int
	// CPUs is the number of virtual CPUs; zero means 1. More than one
	// boots QEMU's pc machine instead of the faster microvm, on which
	// several CPUs hang under TCG.
	CPUs int
}

// Result is what a boot reported.
type Result struct {
	// Exits holds each run's exit status, by package.
	Exits map[string]int
	// Tests counts each run's top-level tests by outcome ("PASS", "FAIL",
	// "SKIP"), from the lines that -test.v prints.
	Tests map[string]map[string]int
	// Figures are the console lines that start with "FIGURE ", in order.
	Figures []string
	// Boot is the wall-clock time from QEMU's start to its exit.
	Boot time.Duration
}

// DefaultKernel returns the kernel of this project's workspace,
// ../shared/freebsd-vm/kernel.gz relative to the module, or "" if there is
// none.
func DefaultKernel(moduleDir string) string {
	for dir := moduleDir; ; {
		k := filepath.Join(dir, "shared", "freebsd-vm", "kernel.gz")
		if _, err := os.Stat(k); err == nil {
			return k
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// Run boots the kernel once, runs the tests of every package and returns
// their exit statuses. Its error is nil only if every binary ran and
// exited 0; errors.Is(err, ErrUnavailable) reports that nothing could be
// booted.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Minute
	}
	if cfg.MemoryMiB == 0 {
		cfg.MemoryMiB = 1024
	}
	if cfg.Output == nil {
		cfg.Output = io.Discard
	}
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		return nil, fmt.Errorf("%w: no QEMU (apt-get install qemu-system-x86): %v", ErrUnavailable, err)
	}
	makefs, err := exec.LookPath("makefs")
	if err != nil {
		return nil, fmt.Errorf("%w: no makefs (apt-get install makefs): %v", ErrUnavailable, err)
	}
	modDir, err := goList(ctx, cfg.Dir, "-m", "-f", "{{.Dir}}")
	if err != nil {
		return nil, err
	}
	kernel := cfg.Kernel
	if kernel == "" {
		kernel = os.Getenv(KernelEnv)
	}
	if kernel == "" {
		kernel = DefaultKernel(strings.TrimSpace(modDir))
	}
	if kernel == "" {
		return nil, fmt.Errorf("%w: no FreeBSD kernel: set %s", ErrUnavailable, KernelEnv)
	}
	if _, err := os.Stat(kernel); err != nil {
		return nil, fmt.Errorf("%w: kernel: %v", ErrUnavailable, err)
	}

	work, err := os.MkdirTemp("", "dualstack-vm-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	root := filepath.Join(work, "root")
	gcfg, err := populate(ctx, cfg, root)
	if err != nil {
		return nil, err
	}
	img := filepath.Join(work, "root.img")
	if err := makeImage(ctx, makefs, root, img); err != nil {
		return nil, err
	}
	kfile, err := unpackKernel(kernel, work)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	return boot(ctx, cfg, qemu, kfile, img, gcfg)
}

// populate fills the root directory of the image: init, the test binaries
// in their package directories, /etc, and the configuration.
func populate(ctx context.Context, cfg Config, root string) (guest.Config, error) {
	gcfg := guest.Config{Sysctls: cfg.Sysctls, Env: cfg.Env}
	for _, d := range []string{"dev", "tmp", "etc", "sbin", "bin"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return gcfg, err
		}
	}
	if err := goBuild(ctx, cfg.Dir, "build", "-o", filepath.Join(root, "sbin", "init"),
		"github.com/dualstack-go/dualstack/internal/vm/vminit"); err != nil {
		return gcfg, err
	}
	for _, pattern := range cfg.Packages {
		out, err := goList(ctx, cfg.Dir, "-f", "{{.ImportPath}}\t{{.Dir}}", pattern)
		if err != nil {
			return gcfg, err
		}
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			path, dir, _ := strings.Cut(line, "\t")
			guestDir := "/src/" + path
			hostDir := filepath.Join(root, filepath.FromSlash(guestDir))
			if err := copyPackage(dir, hostDir); err != nil {
				return gcfg, err
			}
			bin := filepath.Join(hostDir, filepath.Base(path)+".test")
			if err := goBuild(ctx, cfg.Dir, "test", "-c", "-o", bin, path); err != nil {
				return gcfg, err
			}
			if _, err := os.Stat(bin); err != nil {
				continue // no tests in the package
			}
			for range max(cfg.Repeat, 1) {
				gcfg.Runs = append(gcfg.Runs, guest.Run{
					Name: path, Binary: guestDir + "/" + filepath.Base(bin), Dir: guestDir, Args: cfg.Args,
				})
			}
		}
	}
	if len(gcfg.Runs) == 0 {
		return gcfg, errors.New("vm: no test binaries to run")
	}
	b, err := json.MarshalIndent(gcfg, "", "\t")
	if err != nil {
		return gcfg, err
	}
	files := map[string]string{
		guest.ConfigPath: string(b),
		"/etc/hosts":     "127.0.0.1 localhost\n::1 localhost\n",
		"/etc/protocols": "ip 0 IP\nicmp 1 ICMP\ntcp 6 TCP\nudp 17 UDP\nipv6 41 IPV6\nipv6-icmp 58 IPV6-ICMP\n",
		"/etc/services":  "http 80/tcp www\nhttp 80/udp www\nhttps 443/tcp\nhttps 443/udp\ndomain 53/tcp\ndomain 53/udp\nssh 22/tcp\n",
		"/etc/passwd":    "root:*:0:0:Charlie &:/root:/bin/sh\nnobody:*:65534:65534:Unprivileged user:/nonexistent:/usr/sbin/nologin\n",
		"/etc/group":     "wheel:*:0:root\nnobody:*:65534:\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(root, filepath.FromSlash(name)), []byte(content), 0o644); err != nil {
			return gcfg, err
		}
	}
	return gcfg, nil
}

// copyPackage copies the files of a package directory and its testdata
// tree, which tests may read.
func copyPackage(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if d.IsDir() {
			if rel != "." && rel != "testdata" && !strings.HasPrefix(rel, "testdata"+string(filepath.Separator)) {
				return filepath.SkipDir
			}
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
}

func goBuild(ctx context.Context, dir string, args ...string) error {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOOS=freebsd", "GOARCH=amd64", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

func goList(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", append([]string{"list"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOOS=freebsd", "GOARCH=amd64", "CGO_ENABLED=0")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go list %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return string(out), nil
}

// makeImage builds a little-endian UFS1 image of root, sized to its
// contents with half again and 8 MiB to spare.
func makeImage(ctx context.Context, makefs, root, img string) error {
	var size int64
	filepath.WalkDir(root, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if info, err := d.Info(); err == nil {
				size += info.Size()
			}
		}
		return nil
	})
	kib := size/1024*3/2 + 8*1024
	cmd := exec.CommandContext(ctx, makefs, "-t", "ffs", "-B", "le", "-o", "version=1", "-o", "minfree=0",
		"-M", strconv.FormatInt(kib, 10)+"k", "-f", "512", img, root)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("makefs: %v\n%s", err, out)
	}
	return nil
}

// unpackKernel returns the path of the uncompressed kernel.
func unpackKernel(kernel, work string) (string, error) {
	if !strings.HasSuffix(kernel, ".gz") {
		return kernel, nil
	}
	in, err := os.Open(kernel)
	if err != nil {
		return "", err
	}
	defer in.Close()
	zr, err := gzip.NewReader(in)
	if err != nil {
		return "", fmt.Errorf("kernel %s: %w", kernel, err)
	}
	out := filepath.Join(work, "kernel")
	f, err := os.Create(out)
	if err != nil {
		return "", err
	}
	if _, err := io.Copy(f, zr); err != nil {
		f.Close()
		return "", fmt.Errorf("kernel %s: %w", kernel, err)
	}
	return out, f.Close()
}

// accel returns QEMU's accelerator and CPU model.
func accel() (string, string) {
	switch os.Getenv(AccelEnv) {
	case "kvm":
		return "kvm", "host"
	case "tcg":
		return "tcg", "max"
	}
	if runtime.GOARCH == "amd64" && hardwareVirt() {
		return "kvm", "host"
	}
	return "tcg", "max"
}

// hardwareVirt reports whether /dev/kvm is usable and backed by the CPU's
// own virtualization (vmx or svm), not a software KVM.
func hardwareVirt() bool {
	if f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0); err != nil {
		return false
	} else {
		f.Close()
	}
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "flags") {
			f := " " + line + " "
			return strings.Contains(f, " vmx ") || strings.Contains(f, " svm ")
		}
	}
	return false
}

// boot runs QEMU and reads the console until init's done line and QEMU's
// exit, or the context's end.
func boot(ctx context.Context, cfg Config, qemu, kernel, img string, gcfg guest.Config) (*Result, error) {
	acc, cpu := accel()
	machine, disk := "microvm,acpi=on,pic=on,pit=on,rtc=on,isa-serial=on", "virtio-blk-device,drive=root"
	if cfg.CPUs > 1 {
		machine, disk = "pc", "virtio-blk-pci,drive=root"
	}
	cmd := exec.Command(qemu,
		"-M", machine,
		"-accel", acc, "-cpu", cpu, "-smp", strconv.Itoa(max(cfg.CPUs, 1)), "-m", strconv.Itoa(cfg.MemoryMiB),
		"-kernel", kernel,
		"-drive", "id=root,file="+img+",format=raw,if=none,snapshot=on",
		"-device", disk,
		"-display", "none", "-no-reboot", "-monitor", "none", "-serial", "stdio")
	console, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("qemu: %w", err)
	}
	fmt.Fprintf(cfg.Output, "vm: booting %s with QEMU (%s), %d test binaries\n", filepath.Base(kernel), acc, len(gcfg.Runs))

	res := &Result{Exits: map[string]int{}, Tests: map[string]map[string]int{}}
	counts := map[string]int{}
	lines := make(chan error, 1)
	done := -1
	var panicked string
	go func() {
		sc := bufio.NewScanner(console)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			line := strings.TrimRight(sc.Text(), "\r")
			fmt.Fprintln(cfg.Output, line)
			switch {
			case strings.HasPrefix(line, "FIGURE "):
				res.Figures = append(res.Figures, line)
			case strings.HasPrefix(line, "--- "):
				// A top-level test's result: "--- PASS: TestX (0.01s)".
				if outcome, _, ok := strings.Cut(line[4:], ":"); ok {
					counts[outcome]++
				}
			case strings.HasPrefix(line, guest.RunLine+" "):
				f := strings.Fields(strings.TrimPrefix(line, guest.RunLine))
				if len(f) == 2 {
					code, _ := strconv.Atoi(f[1])
					if res.Exits[f[0]] == 0 {
						res.Exits[f[0]] = code
					}
					if res.Tests[f[0]] == nil {
						res.Tests[f[0]] = map[string]int{}
					}
					for k, v := range counts {
						res.Tests[f[0]][k] += v
					}
				}
				counts = map[string]int{}
			case strings.HasPrefix(line, guest.DoneLine+" "):
				done, _ = strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, guest.DoneLine)))
			case strings.HasPrefix(line, "panic: ") && panicked == "" && len(res.Exits) < len(gcfg.Runs):
				panicked = line
			}
		}
		lines <- sc.Err()
	}()
	waited := make(chan error, 1)
	go func() {
		<-lines // the console ends when QEMU exits
		waited <- cmd.Wait()
	}()
	var werr error
	select {
	case werr = <-waited:
	case <-ctx.Done():
		cmd.Process.Kill()
		<-waited
		res.Boot = time.Since(start)
		return res, fmt.Errorf("vm: no end after %v: %w", cfg.Timeout, ctx.Err())
	}
	res.Boot = time.Since(start)
	if werr != nil {
		return res, fmt.Errorf("qemu: %v\n%s", werr, stderr.Bytes())
	}
	if done < 0 {
		why := "the machine stopped before init's last line"
		if panicked != "" {
			why += " (" + panicked + ")"
		}
		return res, fmt.Errorf("vm: %s\n%s", why, stderr.Bytes())
	}
	var failed []string
	for _, r := range gcfg.Runs {
		code, ok := res.Exits[r.Name]
		switch {
		case !ok:
			failed = append(failed, r.Name+": no exit status")
		case code != 0:
			failed = append(failed, fmt.Sprintf("%s: exit status %d", r.Name, code))
		}
	}
	if done != 0 || len(failed) > 0 {
		return res, fmt.Errorf("vm: tests failed: %s (init's status %d)", strings.Join(failed, "; "), done)
	}
	return res, nil
}
