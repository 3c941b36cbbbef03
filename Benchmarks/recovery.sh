#!/usr/bin/env bash
# Catch-up rate, the wait of a w=3 append for a secondary that comes back, and crash
# recovery of a large durable log.
# Usage: Benchmarks/recovery.sh [backlog, default 100000] [log size, default 1000000]
source "$(dirname "$0")/common.sh"
backlog=${1:-100000}
entries=${2:-1000000}
build_replog

seq_of() { curl -s "$1/health" | python3 -c 'import json,sys; print(json.load(sys.stdin)["seq"])'; }
now() { date +%s.%N; }

echo "== catch-up of a $backlog-message backlog"
start cu-s1 secondary --port 7401 --log-level warning
start cu-master master --port 7400 --log-level warning \
  --secondary http://127.0.0.1:7401 --secondary http://127.0.0.1:7402
"$REPLOG" bench --master http://127.0.0.1:7400 --clients 64 --count "$backlog" --duration 600s --w 2 2>/dev/null | grep -E "appends|throughput"
started=$(now)
start cu-s2 secondary --port 7402 --log-level warning
until [ "$(seq_of http://127.0.0.1:7402)" -ge "$backlog" ]; do sleep 0.02; done
python3 -c "import sys; s=float(sys.argv[2])-float(sys.argv[1]); print('caught up %d messages in %.2f s (including process start): %.0f messages/s' % (int(sys.argv[3]), s, int(sys.argv[3])/s))" "$started" "$(now)" "$backlog"

echo "== a w=3 append waiting for a secondary that was down for 15 s"
start wt-s1 secondary --port 7411 --log-level warning
start wt-master master --port 7410 --log-level warning \
  --secondary http://127.0.0.1:7411 --secondary http://127.0.0.1:7412
sleep 15   # long enough to be unhealthy and backing off at the maximum
( curl -s -X POST http://127.0.0.1:7410/messages -d '{"message": "waits", "w": 3}' > /dev/null; now > "$scratch/answered" ) &
sleep 1
started=$(now)
start wt-s2 secondary --port 7412 --log-level warning
until [ -s "$scratch/answered" ]; do sleep 0.01; done
python3 -c "import sys; print('answered %.3f s after the secondary process was started' % (float(sys.argv[2])-float(sys.argv[1])))" "$started" "$(cat "$scratch/answered")"

echo "== recovery of $entries 100-byte messages"
mkdir -p "$scratch/big"
start big master --port 7420 --log-level warning --data-dir "$scratch/big" --fsync never
pid=$last_pid
"$REPLOG" bench --master http://127.0.0.1:7420 --clients 64 --count "$entries" --duration 3600s --w 1 2>/dev/null | grep -E "appends|throughput"
echo "resident memory while serving: $(( $(rss_kib "$pid") / 1024 )) MiB; on disk: $(du -sm "$scratch/big" | cut -f1) MiB"
kill -9 "$pid"
wait "$pid" 2>/dev/null || true
sleep 0.5
started=$(now)
start big2 master --port 7421 --log-level info --data-dir "$scratch/big"
pid=$last_pid
python3 -c "import sys; print('restart to listening: %.2f s' % (float(sys.argv[2])-float(sys.argv[1])))" "$started" "$(now)"
grep -o 'replog.recovery.ms=[0-9]*' "$scratch/big2.err" | sed 's/replog.recovery.ms=/recovery (replay + index rebuild): /; s/$/ ms/'
echo "resident memory after recovery: $(( $(rss_kib "$pid") / 1024 )) MiB"
