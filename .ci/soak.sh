#!/usr/bin/env bash
# make soak: one replica under mixed load for SOAK_DURATION (default 10m)
# while its tokens are edited without pause; every answer is checked
# against the database, heap and goroutines are sampled every 10 s.
#
#   SOAK_DURATION=2m  a shorter soak
#   SOAK_RATE=1000    Checks per second
#   SOAK_DOC=1        write the results into docs/benchmarks.md
#   BENCH_OUT=DIR     logs and reports (default ${TMPDIR:-/tmp}/tollgate-bench)
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
out=${BENCH_OUT:-${TMPDIR:-/tmp}/tollgate-bench}
mkdir -p "$out/bin"

bash .ci/postgres.sh
CGO_ENABLED=0 $GO build -trimpath -o "$out/bin/tollgate" ./cmd/tollgate
$GO build -o "$out/bin/tollgate-bench" ./cmd/tollgate-bench
dur=${SOAK_DURATION:-10m}
args=(-mode soak -tollgate "$out/bin/tollgate" -work-dir "$out" -duration "$dur" -rate "${SOAK_RATE:-1000}"
	-command "SOAK_DURATION=$dur make soak")
if [ "${SOAK_DOC:-0}" = 1 ]; then
	args+=(-doc docs/benchmarks.md)
fi
exec "$out/bin/tollgate-bench" "${args[@]}"
