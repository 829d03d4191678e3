#!/usr/bin/env bash
# make bench: Tollgate's load benchmark against the no-op baseline, on a
# fresh Postgres database of 1,000 then 1,000,000 tokens (measured with
# 100,000 and then all of them cached), with the results written into
# docs/benchmarks.md. About 21-27 minutes on 2 cores, 10-14 of them warming
# a million tokens into the cache (see docs/benchmarks.md).
#
#   BENCH_QUICK=1   1,000 tokens and 3 s runs (about a minute); writes only
#                   to $BENCH_OUT, not the document
#   BENCH_SIZES=1000,100000  other database sizes (the comparisons run on
#                   the first, the largest is warmed and compared again)
#   BENCH_GHZ=0     skip the ghz cross-check (ghz is go-installed otherwise)
#   BENCH_OPA=0     skip the OPA row (bench/opa, a module of its own, is
#                   built otherwise)
#   BENCH_REDIS=0   skip the rate-limit row with Redis (Redis is started
#                   by .ci/redis.sh otherwise; TOLLGATE_TEST_REDIS_URL
#                   names another)
#   BENCH_OUT=DIR   logs and reports (default ${TMPDIR:-/tmp}/tollgate-bench)
#   TOLLGATE_TEST_DATABASE_URL  Postgres to use (default: the local one)
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
out=${BENCH_OUT:-${TMPDIR:-/tmp}/tollgate-bench}
mkdir -p "$out/bin"

bash .ci/postgres.sh
echo "bench: building tollgate, noopauthz and tollgate-bench"
CGO_ENABLED=0 $GO build -trimpath -o "$out/bin/tollgate" ./cmd/tollgate
CGO_ENABLED=0 $GO build -trimpath -o "$out/bin/noopauthz" ./cmd/noopauthz
$GO build -o "$out/bin/tollgate-bench" ./cmd/tollgate-bench

args=(-mode bench -tollgate "$out/bin/tollgate" -noop "$out/bin/noopauthz" -work-dir "$out")
if [ "${BENCH_GHZ:-1}" != 0 ]; then
	# ghz, the load tool the issue names, as a cross-check; installed into
	# $out, never into go.mod.
	if [ -x "$out/bin/ghz" ] || GOBIN="$out/bin" $GO install github.com/bojand/ghz/cmd/ghz@v0.93.0; then
		args+=(-ghz "$out/bin/ghz")
	else
		echo "bench: ghz could not be installed; running without the cross-check" >&2
	fi
fi
if [ "${BENCH_OPA:-1}" != 0 ]; then
	# OPA evaluating the same token check (bench/opa); its own module, so
	# OPA never enters Tollgate's go.mod.
	if (cd bench/opa && CGO_ENABLED=0 $GO build -trimpath -o "$out/bin/opaauthz" .); then
		args+=(-opa "$out/bin/opaauthz")
	else
		echo "bench: bench/opa could not be built; running without the OPA row" >&2
	fi
fi
if [ "${BENCH_REDIS:-1}" != 0 ]; then
	# The rate-limit row with fleet-wide limits: every rate-limited Check
	# is a round trip to this Redis.
	bash .ci/redis.sh
	args+=(-redis-url "${TOLLGATE_TEST_REDIS_URL:-redis://127.0.0.1:6379}")
fi
if [ -n "${BENCH_SIZES:-}" ]; then
	args+=(-sizes "$BENCH_SIZES")
fi
if [ "${BENCH_QUICK:-0}" = 1 ]; then
	args+=(-quick -command "BENCH_QUICK=1 make bench")
else
	args+=(-doc docs/benchmarks.md -command "make bench")
fi
exec "$out/bin/tollgate-bench" "${args[@]}"
