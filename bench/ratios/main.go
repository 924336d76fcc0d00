// Command ratios reads the output of several rounds of go test -bench,
// each round introduced by a line "round N", and prints for each
// benchmark the median over the rounds of its speed against its
// standard-library sibling in the same round: the benchmark with the same
// name but for one path element that names the standard library
// ("net.Listen", "net.ListenPacket", "netip.Addr.Unmap"). A ratio above 1
// is faster than the standard library. For BenchmarkUnmap, where the
// target is absolute, it prints the median difference in nanoseconds
// against netip.Addr.Unmap on the same kind of input.
//
// Usage: go run ./bench/ratios < results.txt
package main

import (
	"bufio"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

type result struct {
	ns, allocs float64
}

var (
	// A round starts with "round N" (bench/run.sh) or with the line the
	// FreeBSD VM's init prints before each run of the test binary.
	roundLine = regexp.MustCompile(`^(round \d+|dualstack-vm: run )`)
	benchLine = regexp.MustCompile(`^(Benchmark\S+?)(-\d+)?\s+\d+\s+([\d.]+) ns/op(.*)$`)
	allocs    = regexp.MustCompile(`([\d.]+) allocs/op`)
)

func main() {
	var rounds []map[string]result
	var order []string
	seen := map[string]bool{}
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		line := sc.Text()
		if roundLine.MatchString(line) {
			rounds = append(rounds, map[string]result{})
			continue
		}
		m := benchLine.FindStringSubmatch(line)
		if m == nil || len(rounds) == 0 {
			continue
		}
		ns, _ := strconv.ParseFloat(m[3], 64)
		r := result{ns: ns, allocs: -1}
		if a := allocs.FindStringSubmatch(m[4]); a != nil {
			r.allocs, _ = strconv.ParseFloat(a[1], 64)
		}
		rounds[len(rounds)-1][m[1]] = r
		if !seen[m[1]] {
			seen[m[1]] = true
			order = append(order, m[1])
		}
	}
	if len(rounds) == 0 {
		fmt.Fprintln(os.Stderr, "ratios: no rounds in the input")
		os.Exit(1)
	}
	fmt.Printf("%d paired rounds; ratio = standard library ns/op / this ns/op (above 1: faster)\n\n", len(rounds))
	fmt.Printf("%-58s %9s %17s %12s %12s %13s\n", "benchmark", "median", "range", "ns/op", "stdlib ns/op", "allocs/stdlib")
	for _, name := range order {
		ref := reference(name, seen)
		if ref == "" {
			continue
		}
		var ratios, diffs, ours, refs []float64
		var a, ra float64
		for _, r := range rounds {
			o, ok1 := r[name]
			s, ok2 := r[ref]
			if !ok1 || !ok2 {
				continue
			}
			ratios = append(ratios, s.ns/o.ns)
			diffs = append(diffs, o.ns-s.ns)
			ours = append(ours, o.ns)
			refs = append(refs, s.ns)
			a, ra = o.allocs, s.allocs
		}
		if len(ratios) == 0 {
			continue
		}
		short := strings.TrimPrefix(name, "Benchmark")
		if strings.HasPrefix(name, "BenchmarkUnmap/") {
			fmt.Printf("%-58s %+8.2fns %7.2f..%+.2fns %12.2f %12.2f %6.0f/%-6.0f\n", short, median(diffs),
				slices.Min(diffs), slices.Max(diffs), median(ours), median(refs), a, ra)
			continue
		}
		fmt.Printf("%-58s %9.3f %8.3f..%-7.3f %12.0f %12.0f %6.0f/%-6.0f\n", short, median(ratios),
			slices.Min(ratios), slices.Max(ratios), median(ours), median(refs), a, ra)
	}

	// The poll loops (epoll, kqueue) against the portable goroutine
	// fan-in, where a benchmark runs both.
	header := false
	for _, name := range order {
		ref := name + "-portable"
		if !seen[ref] {
			continue
		}
		var ratios []float64
		for _, r := range rounds {
			if o, ok := r[name]; ok {
				if p, ok := r[ref]; ok {
					ratios = append(ratios, p.ns/o.ns)
				}
			}
		}
		if len(ratios) == 0 {
			continue
		}
		if !header {
			fmt.Printf("\nagainst the portable goroutine fan-in (above 1: the poll loop is faster)\n")
			header = true
		}
		fmt.Printf("%-58s %9.3f %8.3f..%-7.3f\n", strings.TrimPrefix(name, "Benchmark")+" vs -portable", median(ratios),
			slices.Min(ratios), slices.Max(ratios))
	}
}

// reference returns the standard-library sibling of a benchmark, or "" if
// it is one or has none.
func reference(name string, seen map[string]bool) string {
	parts := strings.Split(name, "/")
	for _, p := range parts[1:] {
		if strings.HasPrefix(p, "net") {
			return ""
		}
	}
	if parts[0] == "BenchmarkUnmap" && len(parts) == 3 {
		kind := "clean"
		if strings.HasPrefix(parts[2], "mapped") {
			kind = "mapped"
		}
		return "BenchmarkUnmap/netip.Addr.Unmap/" + kind
	}
	for other := range seen {
		op := strings.Split(other, "/")
		if len(op) != len(parts) {
			continue
		}
		diff, stdlib := 0, false
		for i := range parts {
			if parts[i] != op[i] {
				diff++
				stdlib = strings.HasPrefix(op[i], "net")
			}
		}
		if diff == 1 && stdlib {
			return other
		}
	}
	return ""
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
