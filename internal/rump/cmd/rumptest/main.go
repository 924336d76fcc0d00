// Command rumptest runs packages' tests against NetBSD's network stack, a
// rump kernel in the test process:
//
//	go run ./internal/rump/cmd/rumptest [packages] [-- test flags]
//
// It finds the libraries ($DUALSTACK_NETBSD_RUMP, a rump.tgz or the
// directory it unpacks to; else ../shared/netbsd-rump/rump.tgz above the
// module), unpacks them into the user's cache directory, and runs go test
// with the tag rump and cgo pointed at them. Without the libraries or a C
// compiler it says so and exits 0, or 1 where DUALSTACK_CI is set. Lines
// the tests print that start with "FIGURE " are repeated at the end.
package main

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Env names the libraries: a rump.tgz, or the directory it unpacks to.
const Env = "DUALSTACK_NETBSD_RUMP"

// knownSum is the sha256 of the rump.tgz this project was written against
// (NetBSD-current of August 2016).
const knownSum = "9d9609b68f8ae47cba3f4243b8719c9d5154f31334c8074f7a4218d35173e400"

func main() {
	args := os.Args[1:]
	var pkgs, testArgs []string
	for i, a := range args {
		if a == "--" {
			testArgs = args[i+1:]
			break
		}
		pkgs = append(pkgs, a)
	}
	if len(pkgs) == 0 {
		pkgs = []string{"."}
	}
	dir, err := libraries()
	if err == nil {
		_, err = exec.LookPath(cc())
		if err != nil {
			err = fmt.Errorf("no C compiler for cgo: %w", err)
		}
	}
	if err != nil {
		if os.Getenv("DUALSTACK_CI") != "" {
			fmt.Fprintln(os.Stderr, "rumptest:", err, "(DUALSTACK_CI is set)")
			os.Exit(1)
		}
		fmt.Fprintln(os.Stderr, "rumptest: skipped:", err)
		return
	}
	os.Exit(run(dir, pkgs, testArgs))
}

func cc() string {
	if c := os.Getenv("CC"); c != "" {
		return strings.Fields(c)[0]
	}
	return "gcc"
}

// libraries returns the directory holding include/ and lib/.
func libraries() (string, error) {
	src := os.Getenv(Env)
	if src == "" {
		wd, err := os.Getwd()
		if err != nil {
			return "", err
		}
		for dir := wd; ; dir = filepath.Dir(dir) {
			p := filepath.Join(dir, "shared", "netbsd-rump", "rump.tgz")
			if _, err := os.Stat(p); err == nil {
				src = p
				break
			}
			if filepath.Dir(dir) == dir {
				return "", errors.New("no NetBSD rump libraries: set " + Env + " or put rump.tgz in ../shared/netbsd-rump")
			}
		}
	}
	if fi, err := os.Stat(src); err != nil {
		return "", err
	} else if fi.IsDir() {
		return src, nil
	}
	return unpack(src)
}

// unpack unpacks the archive into the cache, once per content.
func unpack(tgz string) (string, error) {
	data, err := os.ReadFile(tgz)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(data)
	hexSum := hex.EncodeToString(sum[:])
	if hexSum != knownSum {
		fmt.Fprintf(os.Stderr, "rumptest: %s is not the archive this project knows (sha256 %s); using it anyway\n", tgz, hexSum)
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dest := filepath.Join(cache, "dualstack", "netbsd-rump-"+hexSum[:16])
	if _, err := os.Stat(filepath.Join(dest, "lib")); err == nil {
		return dest, nil
	}
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dest), ".unpack-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	if err := untar(data, tmp); err != nil {
		return "", fmt.Errorf("unpacking %s: %w", tgz, err)
	}
	if err := os.Rename(tmp, dest); err != nil && !os.IsExist(err) {
		if _, serr := os.Stat(filepath.Join(dest, "lib")); serr != nil {
			return "", err
		}
	}
	return dest, nil
}

func untar(data []byte, dest string) error {
	gz, err := gzip.NewReader(strings.NewReader(string(data)))
	if err != nil {
		return err
	}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		name := filepath.Clean(h.Name)
		if filepath.IsAbs(name) || strings.HasPrefix(name, "..") {
			return fmt.Errorf("unsafe path %q", h.Name)
		}
		p := filepath.Join(dest, name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode)&0o755|0o644)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		case tar.TypeSymlink:
			if filepath.IsAbs(h.Linkname) || strings.Contains(h.Linkname, "..") {
				return fmt.Errorf("unsafe link %q -> %q", h.Name, h.Linkname)
			}
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			if err := os.Symlink(h.Linkname, p); err != nil {
				return err
			}
		}
	}
}

// libs are the rump components, linked whether or not a symbol is used:
// each registers itself when loaded.
const libs = "-Wl,--no-as-needed -lrumpnet_netinet6 -lrumpnet_netinet -lrumpnet_net -lrumpnet -lrump -lrumpuser -lpthread -ldl -lrt"

func run(dir string, pkgs, testArgs []string) int {
	args := append([]string{"test", "-tags", "rump", "-count=1"}, pkgs...)
	args = append(args, testArgs...)
	cmd := exec.Command("go", args...)
	cmd.Env = append(os.Environ(),
		"CGO_ENABLED=1",
		"CGO_CFLAGS=-I"+filepath.Join(dir, "include"),
		"CGO_LDFLAGS=-L"+filepath.Join(dir, "lib")+" -Wl,-rpath,"+filepath.Join(dir, "lib")+" "+libs,
		// For test binaries that link the libraries without the rpath
		// (internal linking of a package that uses no rump call).
		"LD_LIBRARY_PATH="+filepath.Join(dir, "lib"),
	)
	out, err := cmd.StdoutPipe()
	if err != nil {
		fmt.Fprintln(os.Stderr, "rumptest:", err)
		return 1
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "rumptest:", err)
		return 1
	}
	var figures []string
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		// The rump kernel's loader says this once a process; it is harmless.
		if strings.HasPrefix(line, "could not find strtab, symtab") {
			continue
		}
		fmt.Println(line)
		if strings.HasPrefix(line, "FIGURE ") {
			figures = append(figures, line)
		}
	}
	err = cmd.Wait()
	for _, f := range figures {
		fmt.Println(f)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "rumptest:", err)
		return 1
	}
	return 0
}
