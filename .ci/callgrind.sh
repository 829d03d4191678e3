#!/usr/bin/env bash
# make callgrind: instructions per Check, Tollgate next to the no-op
# ext_authz server, counted by valgrind's callgrind, so that a change of a
# few percent shows on a machine too noisy for CPU time to. It runs
# extauthz's BenchmarkCheckGRPC (a loopback gRPC server and its client in
# one process; a cache hit for Tollgate) under callgrind for N and 2N
# Checks and divides the difference by N, which leaves out start-up.
# Client and server are both counted: the client's share is the same for
# both servers, so the difference is Tollgate's own. One round's figure
# still moves by a few percent (how the scheduler interleaves client,
# server and transport differs from run to run), so it runs several
# rounds, alternating the servers, and prints the median. The no-op runs
# twice: with gRPC's defaults (cmd/noopauthz, the baseline) and with the
# stream workers Tollgate serves with, so that what the workers save is
# not counted as Tollgate's own.
#
#   CALLGRIND_N=1000      Checks in the shorter run (the longer runs 2N)
#   CALLGRIND_ROUNDS=3    rounds
#   BENCH_OUT=DIR      where the test binary goes (default ${TMPDIR:-/tmp}/tollgate-bench)
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
out=${BENCH_OUT:-${TMPDIR:-/tmp}/tollgate-bench}
n=${CALLGRIND_N:-1000}
rounds=${CALLGRIND_ROUNDS:-3}
mkdir -p "$out"
if ! command -v valgrind >/dev/null 2>&1; then
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null
fi
$GO test -c -o "$out/extauthz.test" ./internal/extauthz

# Valgrind 3.19 cannot run RDTSCP and trips over Go's preemption signal;
# one P makes the interleaving of client and server the same every run.
export GODEBUG=asyncpreemptoff=1,cpu.rdtscp=off GOMAXPROCS=1
instructions() { # server, checks
	(cd internal/extauthz && valgrind --tool=callgrind --callgrind-out-file=/dev/null \
		"$out/extauthz.test" -test.run '^$' -test.bench "^BenchmarkCheckGRPC\$/^$1\$" -test.benchtime="$2x" 2>&1) |
		sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
declare -A all
for round in $(seq "$rounds"); do
	for server in noop noop-workers tollgate; do
		a=$(instructions "$server" "$n")
		b=$(instructions "$server" $((2 * n)))
		per=$(((b - a) / n))
		all[$server]+="$per "
		echo "callgrind: round $round, $server: $a instructions for $n Checks, $b for $((2 * n)): $per per Check"
	done
done
median() { tr ' ' '\n' <<<"$1" | grep . | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
o=$(median "${all[noop]}")
w=$(median "${all[noop-workers]}")
t=$(median "${all[tollgate]}")
echo "callgrind: rounds: no-op ${all[noop]}; no-op with Tollgate's stream workers ${all[noop-workers]}; Tollgate ${all[tollgate]}"
awk -v t="$t" -v o="$o" -v w="$w" 'BEGIN {
	printf "callgrind: instructions per Check (client and server, median of rounds): no-op %d, Tollgate %d (%.2fx); Tollgate adds %d\n", o, t, t / o, t - o
	printf "callgrind: against the no-op given the same stream workers (%d): %.2fx; Tollgate adds %d\n", w, t / w, t - w }'
