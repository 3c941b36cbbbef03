#!/usr/bin/env bash
# What the commit point costs (issue 30's measurements), on a cluster of three with failover:
#
# 1. Followers of /messages/stream on the master and on a secondary while clients append
#    at a fixed rate with w=2: per message, the time from its 201 to its arrival at every
#    follower. A follower is shown an entry once it is committed; before the commit point
#    (BEFORE=path/to/an/older/replog) it was shown once the node held it.
# 2. Reads at 64 clients, as fast as answers come: committed against linearizable (one
#    majority round shared by the reads waiting at that moment).
#
# The generator is always this build's `replog bench`; BEFORE only changes the nodes.
# Usage: BEFORE=/path/to/old/replog Benchmarks/commit-point.sh [seconds per row, default 10]
source "$(dirname "$0")/common.sh"
duration=${1:-10}
build_replog
after=$REPLOG
# Data dirs on tmpfs: a node with failover votes only with one, and this measures the
# protocol, not the disk.
export STORAGE=${STORAGE:-always}
rm -rf "$scratch"
scratch=$(mktemp -d /dev/shm/replog-commit.XXXXXX)

port=7700
follow_row() {  # follow_row LABEL NODES_BINARY FOLLOWED_OFFSET FOLLOWERS RATE
  local label=$1 nodes=$2 offset=$3 followers=$4 rate=$5
  REPLOG=$nodes cluster "commit-$port" "$port" --failover
  sleep 1  # the first election's heartbeats settle
  "$after" bench --master "http://127.0.0.1:$port" --w 2 --clients 16 --rate "$rate" --duration "${duration}s" \
    --followers "$followers" --follow "http://127.0.0.1:$((port + offset))" --json > "$scratch/follow-$port.json" 2>/dev/null
  python3 - "$scratch/follow-$port.json" "$label" "$followers" "$offset" "$rate" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); f = r["fanOut"]; t = f.get("toEveryFollower") or {}
node = "master" if sys.argv[4] == "0" else "secondary"
print("| %s | %s on the %s | %s / %.0f | %d of %d | %s | %s | %s |" % (sys.argv[2], sys.argv[3], node, sys.argv[5], r["appendsPerSecond"],
      f["reachedEveryFollower"], f["acknowledged"], t.get("p50", "–"), t.get("p99", "–"), t.get("max", "–")))
PY
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pids=()
  port=$((port + 10))
}

echo "| nodes | followers | appends/s asked / done | reached every follower | 201 → every follower p50 ms | p99 ms | max ms |"
echo "|---|---|---|---|---|---|---|"
for offset in 0 2; do
  [ -n "${BEFORE:-}" ] && follow_row "before" "$BEFORE" "$offset" 10 1000
  follow_row "after" "$after" "$offset" 10 1000
done
echo

echo "| read level | reads/s | p50 ms | p99 ms | errors |"
echo "|---|---|---|---|---|"
REPLOG=$after cluster "reads-$port" "$port" --failover
sleep 1
curl -s -X POST "http://127.0.0.1:$port/messages" -d '{"message": "read me", "w": 3}' > /dev/null
for round in 1 2; do
  for level in committed linearizable; do
    "$after" bench --master "http://127.0.0.1:$port" --read "$level" --clients 64 --duration "${duration}s" --json > "$scratch/read-$level.json" 2>/dev/null
    python3 - "$scratch/read-$level.json" "$level" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); l = r["latency"]
print("| %s | %.0f | %.2f | %.2f | %d |" % (sys.argv[2], r["appendsPerSecond"], l["p50"], l["p99"], r["errors"]))
PY
  done
done
echo
footer "${duration} s per row, cluster of 3 with --failover, data dirs on tmpfs (--fsync $STORAGE), w=2, 100-byte messages${BEFORE:+, before: $BEFORE}"
