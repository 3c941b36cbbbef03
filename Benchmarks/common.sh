# shellcheck shell=bash
# Shared helpers of the benchmark scripts: build, start processes on 127.0.0.1, clean up.
# Every process a script starts is recorded and killed (by PID) when the script exits.

set -euo pipefail
cd "$(dirname "$0")/.."

pids=()
scratch=$(mktemp -d /tmp/replog-bench.XXXXXX)
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$scratch"
}
trap cleanup EXIT

build_replog() {
  if [ -n "${REPLOG:-}" ]; then  # a binary given by the caller
    replog_build="given binary $REPLOG"
    return
  fi
  echo "building replog (release)…" >&2
  swift build -c release --product replog >&2
  REPLOG="$(swift build -c release --show-bin-path)/replog"
  replog_build="release build of $(git rev-parse --short HEAD 2>/dev/null || echo 'an unknown commit')"
  if ! git diff --quiet HEAD 2>/dev/null; then replog_build+=" with uncommitted changes"; fi
  export REPLOG
}

# footer DETAILS…: the line under a table that says where and when it was made, and of what.
footer() {
  echo "$(nproc) cores, $(uname -sr), replog: ${replog_build:-not built}, $*, $(date -u '+%Y-%m-%d %H:%M UTC')"
}

# start NAME ARGS… : runs replog ARGS in the background, waits for "listening on", records
# the PID for cleanup and leaves it in $last_pid. (Not in $(…): that would be a subshell.)
last_pid=""
start() {
  local name=$1; shift
  "$REPLOG" "$@" > "$scratch/$name.out" 2> "$scratch/$name.err" &
  local pid=$!
  pids+=("$pid")
  for _ in $(seq 1 300); do
    # shellcheck disable=SC2034  # read by the scripts that source this file
    grep -q "listening on" "$scratch/$name.out" 2>/dev/null && { last_pid=$pid; return 0; }
    kill -0 "$pid" 2>/dev/null || { cat "$scratch/$name.err" >&2; echo "$name exited" >&2; return 1; }
    sleep 0.05
  done
  echo "$name did not start" >&2
  return 1
}

# cluster PREFIX PORT [master flags…] : master on PORT, secondaries on PORT+1 and PORT+2.
cluster() {
  local prefix=$1 port=$2; shift 2
  local storage=()
  if [ "${STORAGE:-memory}" != memory ]; then
    for node in s1 s2 master; do mkdir -p "$scratch/$prefix-$node"; done
  fi
  for i in 1 2; do
    [ "${STORAGE:-memory}" != memory ] && storage=(--data-dir "$scratch/$prefix-s$i" --fsync "$STORAGE")
    start "$prefix-s$i" secondary --port $((port + i)) --log-level warning "${storage[@]}"
  done
  [ "${STORAGE:-memory}" != memory ] && storage=(--data-dir "$scratch/$prefix-master" --fsync "$STORAGE")
  start "$prefix-master" master --port "$port" --log-level warning \
    --secondary "http://127.0.0.1:$((port + 1))" --secondary "http://127.0.0.1:$((port + 2))" "${storage[@]}" "$@"
}

# start_redis PORT : a Redis primary on PORT with replicas on PORT+1 and PORT+2, nothing on
# disk; returns once both replicas are connected.
start_redis() {
  local primary=$1 port
  for port in "$primary" $((primary + 1)) $((primary + 2)); do
    local replica=()
    [ "$port" != "$primary" ] && replica=(--replicaof 127.0.0.1 "$primary")
    mkdir -p "$scratch/redis-$port"
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --daemonize no --dir "$scratch/redis-$port" "${replica[@]}" \
      > "$scratch/redis-$port.log" 2>&1 &
    pids+=($!)
  done
  for _ in $(seq 1 100); do
    redis-cli -p "$primary" info replication 2>/dev/null | grep -q "connected_slaves:2" && break
    sleep 0.1
  done
}

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
