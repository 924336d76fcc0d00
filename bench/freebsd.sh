#!/usr/bin/env bash
# Runs the accept and UDP read benchmarks on the FreeBSD kernel of the test
# VM, in paired rounds (the test binary runs ROUNDS times in one boot, each
# run every benchmark once), and prints the median ratios (bench/ratios):
# against the standard library, and the poll loop (kqueue) against the
# portable goroutine fan-in. Under QEMU's TCG the absolute times mean
# little; the ratios are the figures. The VM gets two CPUs (QEMU's pc
# machine): on one, the clients and the server share a CPU whose scheduler
# ticks every 10 ms, and even net.Listen takes hundreds of milliseconds an
# accept. The raw output stays in bench/freebsd.txt.
#
#   bash bench/freebsd.sh
#   ROUNDS=20 BENCHTIME=500ms bash bench/freebsd.sh
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=${ROUNDS:-10}
bench=${BENCH:-'BenchmarkAccept|BenchmarkPacketRead'}
benchtime=${BENCHTIME:-300ms}
out=${OUT:-bench/freebsd.txt}

go run ./internal/vm/cmd/vmtest -smp 2 -repeat "$rounds" -timeout 30m . -- \
	-test.run '^$' -test.bench "$bench" -test.benchmem -test.count 1 \
	-test.benchtime "$benchtime" > "$out"
grep -E '^(goos|goarch|cpu|vmtest)' "$out" | sort -u
go run ./bench/ratios < "$out"
