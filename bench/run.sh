#!/usr/bin/env bash
# Runs the benchmarks in paired rounds, each round running every benchmark
# once next to its standard-library sibling, and prints the median ratios
# (bench/ratios). The raw output stays in bench/results.txt for benchstat.
#
#   bash bench/run.sh                      # 10 rounds of everything
#   ROUNDS=20 BENCH=BenchmarkAccept bash bench/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=${ROUNDS:-10}
bench=${BENCH:-'BenchmarkAccept|BenchmarkListenClose|BenchmarkCopy|BenchmarkPacketRead|BenchmarkUnmap'}
benchtime=${BENCHTIME:-500ms}
out=${OUT:-bench/results.txt}

bin=$(mktemp)
trap 'rm -f "$bin"' EXIT
go test -c -o "$bin" .

{
	echo "# $(date -u +%Y-%m-%dT%H:%MZ) $(go version) $(uname -sr)"
	echo "# $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2-), $(nproc) cores"
} > "$out"
for r in $(seq 1 "$rounds"); do
	echo "round $r" | tee -a "$out" >&2
	"$bin" -test.run '^$' -test.bench "$bench" -test.benchmem -test.count 1 \
		-test.benchtime "$benchtime" >> "$out"
done
head -2 "$out"
go run ./bench/ratios < "$out"
