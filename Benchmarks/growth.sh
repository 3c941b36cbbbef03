#!/usr/bin/env bash
# How cost grows (issue 17): throughput, p99 and the CPU of every process as the work grows,
# one dimension at a time from a base of 3 in-memory nodes, 64 clients, 100-byte messages:
#   - secondaries: 1, 2, 4 and 8, with w = every node and w = a majority
#   - message size: 100 B, 10 KiB (64 clients) and 1 MiB (8 clients)
#   - clients: 1, 64 and 512
#   - a log of 10 M entries: the append rate at that size, and its recovery time
# "CPU" is cores used during the row (user + system, from /proc), per process, so a row
# shows which process runs out first; with 2 cores, a total near 2 means the machine did.
# Usage: Benchmarks/growth.sh [seconds per row, default 10] [entries of the large log, default 10000000]
#        ONLY_LARGE_LOG=1 Benchmarks/growth.sh …   (the large log alone)
source "$(dirname "$0")/common.sh"
duration=${1:-10}
large=${2:-10000000}
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
build_replog

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

# nodes PORT SECONDARIES [master flags…]: an in-memory master on PORT and secondaries after it.
nodes() {
  local port=$1 count=$2; shift 2
  local flags=()
  for i in $(seq 1 "$count"); do
    start "n$port-s$i" secondary --port $((port + i)) --log-level warning
    flags+=(--secondary "http://127.0.0.1:$((port + i))")
  done
  start "n$port-master" master --port "$port" --log-level warning "${flags[@]}" "$@"
  group=()
  for i in $(seq 0 "$count"); do group+=("$(pgrep -f -- "--port $((port + i)) " | head -1)"); done
}

# row DIMENSION VALUE bench-args… : one bench run against the group started last.
row() {
  local dimension=$1 value=$2; shift 2
  local before=() pid
  for pid in "${group[@]}"; do before+=("$(ticks "$pid")"); done
  local started; started=$(date +%s.%N)
  "$REPLOG" bench --duration "${duration}s" --json "$@" > "$scratch/row.json" 2>/dev/null
  local seconds; seconds=$(python3 -c "import sys,time; print(time.time() - float(sys.argv[1]))" "$started")
  local cpu=() i=0
  for pid in "${group[@]}"; do cpu+=("$(( $(ticks "$pid") - before[i] ))"); i=$((i + 1)); done
  python3 - "$scratch/row.json" "$dimension" "$value" "$seconds" "$hz" "${cpu[@]}" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); seconds = float(sys.argv[4]); hz = int(sys.argv[5])
cores = [int(t) / hz / seconds for t in sys.argv[6:]]
secondaries = cores[1:]
each = "%.2f (max %.2f)" % (sum(secondaries), max(secondaries)) if secondaries else "none"
print("| %s | %s | %.0f | %.1f | %.3f | %.3f | %.2f | %s | %.2f | %.2f |" % (sys.argv[2], sys.argv[3],
      r["appendsPerSecond"], r["appendsPerSecond"] * r["messageSize"] / 1e6, r["latency"]["p50"], r["latency"]["p99"],
      cores[0], each, r["benchCPUCores"], sum(cores) + r["benchCPUCores"]))
PY
}

stop_group() { for pid in "${group[@]}"; do kill "$pid" 2>/dev/null || true; done; sleep 0.3; }

if [ -z "${ONLY_LARGE_LOG:-}" ]; then
echo "| grows | row | appends/s | MB/s of messages | p50 ms | p99 ms | master CPU | secondaries CPU | bench CPU | all CPU (of 2) |"
echo "|---|---|---|---|---|---|---|---|---|---|"
port=7700
for count in 1 2 4 8; do
  nodes $port "$count"
  majority=$(( (count + 1) / 2 + 1 ))
  row secondaries "$count, w=$((count + 1)) (all)" --master "http://127.0.0.1:$port" --clients 64 --w $((count + 1))
  row secondaries "$count, w=$majority (majority)" --master "http://127.0.0.1:$port" --clients 64 --w $majority
  stop_group; port=$((port + 20))
done
nodes $port 2 --max-body 2097152
row "message size" "100 B" --master "http://127.0.0.1:$port" --clients 64 --w 3 --size 100
row "message size" "10 KiB" --master "http://127.0.0.1:$port" --clients 64 --w 3 --size 10240
row "message size" "1 MiB, 8 clients" --master "http://127.0.0.1:$port" --clients 8 --w 3 --size 1048576
stop_group; port=$((port + 20))
nodes $port 2
for clients in 1 64 512; do
  row clients "$clients" --master "http://127.0.0.1:$port" --clients "$clients" --w 3
done
stop_group
fi

echo
echo "== a log of $large entries (one master, --data-dir, --fsync never, as in recovery.sh)"
mkdir -p "$scratch/large"
start large master --port 7790 --log-level warning --data-dir "$scratch/large" --fsync never
pid=$last_pid
group=("$pid")
row "log size" "empty" --master http://127.0.0.1:7790 --clients 64 --w 1
"$REPLOG" bench --master http://127.0.0.1:7790 --clients 64 --batch 100 --count $(( large / 100 )) --duration 3600s --w 1 2>/dev/null | grep -E "messages "
row "log size" "$large entries" --master http://127.0.0.1:7790 --clients 64 --w 1
echo "resident memory: $(( $(rss_kib "$pid") / 1024 )) MiB; on disk: $(du -sm "$scratch/large" | cut -f1) MiB"
kill -9 "$pid"; wait "$pid" 2>/dev/null || true
start large2 master --port 7791 --log-level info --data-dir "$scratch/large"
grep -o 'replog.recovery.ms=[0-9]*' "$scratch/large2.err" | sed 's/replog.recovery.ms=/recovery (replay + index rebuild): /; s/$/ ms/'
echo "resident memory after recovery: $(( $(rss_kib "$last_pid") / 1024 )) MiB"
echo
footer "${duration} s per row"
