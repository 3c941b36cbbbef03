#!/usr/bin/env bash
# Batches (issue 16's measurement): 64 clients each append batches of 100 messages of 100
# bytes, w=3, beside Redis RPUSH of the same 100 messages + WAIT 2 0, with the same
# generator (replog bench --batch) in the same run. One message at a time is shown too,
# so the table says what batching buys.
# Usage: Benchmarks/batches.sh [seconds per row, default 10] [messages per batch, default 100]
source "$(dirname "$0")/common.sh"
duration=${1:-10}
batch=${2:-100}
command -v redis-server >/dev/null || { apt-get update -qq && apt-get install -y -qq redis-server >/dev/null; }
build_replog

# Redis primary 7479 with replicas 7480 and 7481, nothing on disk.
start_redis 7479
cluster mem 7500
STORAGE=always cluster always 7510
STORAGE=always cluster failover 7520 --failover

row() {  # row SYSTEM CONFIG BATCH bench-args…
  local system=$1 config=$2 size=$3; shift 3
  "$REPLOG" bench --clients 64 --duration "${duration}s" --batch "$size" --json "$@" 2>/dev/null |
    python3 -c 'import json,sys
r=json.load(sys.stdin)
print("| %s | %s | %d | %.0f | %.0f | %.3f | %.3f | %d |" % (sys.argv[1], sys.argv[2], r["batch"], r["messagesPerSecond"],
      r["appendsPerSecond"], r["latency"]["p50"], r["latency"]["p99"], r["errors"]))' "$system" "$config"
}

echo "| system | configuration | messages per request | messages/s | requests/s | p50 ms | p99 ms | errors |"
echo "|---|---|---|---|---|---|---|---|"
for size in "$batch" 1; do
  row "Redis $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/')" "RPUSH + WAIT 2 0, no persistence" "$size" --redis 127.0.0.1:7479 --redis-replicas 2
  row "replog" "in memory, w=3" "$size" --master http://127.0.0.1:7500 --w 3
  row "replog" "fsync always, w=3" "$size" --master http://127.0.0.1:7510 --w 3
  row "replog" "fsync always, failover, w=3" "$size" --master http://127.0.0.1:7520 --w 3
done
echo
footer "64 clients, 100-byte messages, ${duration} s per row"
