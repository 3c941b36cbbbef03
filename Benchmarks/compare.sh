#!/usr/bin/env bash
# Side-by-side comparison of two replog binaries on this machine: alternating runs of the
# same load against a fresh 3-node in-memory cluster of each, with the CPU every node
# spent per append. Alternating is what makes it fair here: the machine's speed drifts by
# 10-30 % from one minute to the next, so compare pairs, not runs of different minutes.
#
#   Benchmarks/compare.sh OLD_BINARY NEW_BINARY [ROUNDS=4] [SECONDS=6] [W=3] [CLIENTS=64]
#
# STORAGE=always|interval|never puts the nodes' logs on disk (default: in memory); SIZE=N
# sends N-byte messages (default 100; the master takes bodies of twice that);
# MASTER_FLAGS adds flags to the master's command line (e.g. --failover: an elected master,
# whose fsync overlaps the replication).
#
# Build the two binaries first, e.g. `git worktree add /tmp/old <rev>` and
# `swift build -c release --product replog` in each. The load generator is always the
# first binary's `replog bench`, so only the cluster differs.
source "$(dirname "$0")/common.sh"

old=${1:?usage: compare.sh OLD_BINARY NEW_BINARY [ROUNDS] [SECONDS] [W] [CLIENTS]}
new=${2:?usage: compare.sh OLD_BINARY NEW_BINARY [ROUNDS] [SECONDS] [W] [CLIENTS]}
rounds=${3:-4} seconds=${4:-6} w=${5:-3} clients=${6:-64}
size=${SIZE:-100}
port=7600
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }  # user + system CPU, in clock ticks
hz=$(getconf CLK_TCK)

echo "| round | binary | appends/s | p50 ms | master µs/append | secondary µs/append (each) |"
echo "|---|---|---|---|---|---|"
for round in $(seq "$rounds"); do
  for binary in "$old" "$new"; do
    # shellcheck disable=SC2034  # read by cluster() in common.sh
    REPLOG=$binary
    before=${#pids[@]}
    # shellcheck disable=SC2086  # MASTER_FLAGS is a list of flags
    cluster "r$round" $port --max-body $(( size * 2 + 4096 > 1048576 ? size * 2 + 4096 : 1048576 )) ${MASTER_FLAGS:-}
    cluster_pids=("${pids[@]:$before}")  # s1, s2, master
    declare -A start_ticks=()
    for pid in "${cluster_pids[@]}"; do start_ticks[$pid]=$(ticks "$pid"); done
    result=$("$old" bench --master "http://127.0.0.1:$port" --clients "$clients" --duration "${seconds}s" --w "$w" --size "$size" --json 2>/dev/null)
    spent=()
    for pid in "${cluster_pids[@]}"; do spent+=($(( $(ticks "$pid") - start_ticks[$pid] ))); done
    kill "${cluster_pids[@]}" 2>/dev/null || true
    wait "${cluster_pids[@]}" 2>/dev/null || true
    python3 -c '
import json, sys
r = json.loads(sys.argv[1]); hz = float(sys.argv[2]); s1, s2, master = map(int, sys.argv[3:6])
n = r["appends"]
us = lambda t: t / hz / n * 1e6 if n else float("nan")
print("| %s | %s | %.0f | %.3f | %.1f | %.1f |" % (sys.argv[6], sys.argv[7], r["appendsPerSecond"], r["latency"]["p50"], us(master), (us(s1) + us(s2)) / 2))
' "$result" "$hz" "${spent[@]}" "$round" "$binary"
    port=$((port + 3))
  done
done
