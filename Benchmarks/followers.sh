#!/usr/bin/env bash
# Many followers of GET /messages/stream on one secondary while clients append (issue 16's
# measurement): for each message, the time from its 201 to its arrival at every follower,
# and the secondary's resident memory while they follow.
# Usage: Benchmarks/followers.sh [seconds per row, default 10] [followers,rate …]
#   e.g. Benchmarks/followers.sh 10 1000,5000 100,5000 1000,500
source "$(dirname "$0")/common.sh"
duration=${1:-10}
shift || true
rows=("$@")
[ ${#rows[@]} -gt 0 ] || rows=(1000,5000 100,5000 1000,1000)
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true  # a socket per follower, in the node and in the generator
build_replog

echo "| followers | appends/s asked | appends/s done | reached every follower | 201 → every follower p50 ms | p99 ms | max ms | secondary RSS MiB before / max / after |"
echo "|---|---|---|---|---|---|---|---|"
port=7600
for row in "${rows[@]}"; do
  followers=${row%,*}; rate=${row#*,}
  cluster "followers-$port" "$port"
  secondary_pid=$(pgrep -f -- "secondary --port $((port + 2)) " | head -1)
  before=$(rss_kib "$secondary_pid")
  max=$before
  "$REPLOG" bench --master "http://127.0.0.1:$port" --w 2 --clients 64 --rate "$rate" --duration "${duration}s" \
    --followers "$followers" --follow "http://127.0.0.1:$((port + 2))" --json > "$scratch/followers-$port.json" 2>/dev/null &
  bench=$!
  while kill -0 "$bench" 2>/dev/null; do
    rss=$(rss_kib "$secondary_pid"); [ "$rss" -gt "$max" ] && max=$rss
    sleep 0.5
  done
  wait "$bench"
  after=$(rss_kib "$secondary_pid")
  python3 - "$scratch/followers-$port.json" "$followers" "$rate" "$before" "$max" "$after" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); f = r["fanOut"]; t = f.get("toEveryFollower") or {}
mib = lambda k: "%.0f" % (int(k) / 1024)
print("| %s | %s | %.0f | %d of %d | %s | %s | %s | %s / %s / %s |" % (sys.argv[2], sys.argv[3], r["appendsPerSecond"],
      f["reachedEveryFollower"], f["acknowledged"], t.get("p50", "–"), t.get("p99", "–"), t.get("max", "–"),
      mib(sys.argv[4]), mib(sys.argv[5]), mib(sys.argv[6])))
PY
  port=$((port + 10))
done
echo
footer "${duration} s per row, in-memory cluster of 3, w=2, 100-byte messages"
