#!/usr/bin/env bash
# make callgrind: instructions per Check, Tollgate next to the no-op
# ext_authz server, counted by valgrind's callgrind, so that a change of a
# few percent shows on a machine too noisy for CPU time to. It runs
# extauthz's BenchmarkCheckGRPC (a loopback gRPC server and its client in
# one process; a cache hit for Tollgate) under callgrind for N and 2N
# Checks and divides the difference by N, which leaves out start-up.
# Client and server are both counted: the client's share is the same for
# both servers, so the difference is Tollgate's own.
#
#   CALLGRIND_N=2000   Checks in the shorter run (the longer runs 2N)
#   BENCH_OUT=DIR      where the test binary goes (default ${TMPDIR:-/tmp}/tollgate-bench)
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
out=${BENCH_OUT:-${TMPDIR:-/tmp}/tollgate-bench}
n=${CALLGRIND_N:-2000}
mkdir -p "$out"
if ! command -v valgrind >/dev/null 2>&1; then
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null
fi
$GO test -c -o "$out/extauthz.test" ./extauthz

# Valgrind 3.19 cannot run RDTSCP and trips over Go's preemption signal;
# one P makes the interleaving of client and server the same every run.
export GODEBUG=asyncpreemptoff=1,cpu.rdtscp=off GOMAXPROCS=1
instructions() { # server, checks
	(cd extauthz && valgrind --tool=callgrind --callgrind-out-file=/dev/null \
		"$out/extauthz.test" -test.run '^$' -test.bench "^BenchmarkCheckGRPC\$/^$1\$" -test.benchtime="$2x" 2>&1) |
		sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
declare -A per
for server in noop tollgate; do
	a=$(instructions "$server" "$n")
	b=$(instructions "$server" $((2 * n)))
	per[$server]=$(((b - a) / n))
	echo "callgrind: $server: $a instructions for $n Checks, $b for $((2 * n)): ${per[$server]} per Check"
done
awk -v t="${per[tollgate]}" -v o="${per[noop]}" 'BEGIN {
	printf "callgrind: instructions per Check (client and server): no-op %d, Tollgate %d (%.2fx); Tollgate adds %d\n", o, t, t / o, t - o }'
