#!/usr/bin/env python3
"""How long a cluster with failover takes to accept appends again after its master dies.

Starts three `replog` nodes with failover (default election settings: heartbeats every
250 ms, election timeout 1-2 s) on 127.0.0.1, then KILLS times: finds the master, kill -9s
it, and measures from the kill to the first 201 of an append sent through the other nodes
(following their 307 to the new master, as curl -L does); then restarts the killed node and
waits until it follows the new master and holds its log. Prints p50, p99 and max.

Usage: Benchmarks/failover-time.py [path to replog] [kills]   (default .build/release/replog, 20)
"""
import json, os, signal, subprocess, sys, tempfile, time, urllib.error, urllib.request

REPLOG = sys.argv[1] if len(sys.argv) > 1 else ".build/release/replog"
KILLS = int(sys.argv[2]) if len(sys.argv) > 2 else 20
PORTS = [7100, 7101, 7102]
URLS = [f"http://127.0.0.1:{p}" for p in PORTS]
folder = tempfile.mkdtemp(prefix="replog-failover-time-")


def command(index):
    storage = ["--data-dir", f"{folder}/n{index}", "--log-level", "warning"]
    if index == 0:
        return [REPLOG, "master", "--port", str(PORTS[0]), "--failover", "--secondary", URLS[1], "--secondary", URLS[2]] + storage
    return [REPLOG, "secondary", "--port", str(PORTS[index])] + storage


def start(index):
    process = subprocess.Popen(command(index), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in process.stdout:
        if "listening on" in line:
            return process
    raise SystemExit(f"node {index} did not start")


def health_of(node, timeout=1.0):
    """The node's /health, or None."""
    try:
        with urllib.request.urlopen(node + "/health", timeout=timeout) as reply:
            return json.load(reply)
    except (urllib.error.URLError, OSError, ValueError):
        return None


def append(node, message, key):
    """POST through `node`, following one 307; True on 201."""
    url = node + "/messages"
    body = json.dumps({"message": message, "w": 2, "id": key}).encode()
    for _ in range(2):
        request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=1.0) as reply:
                return reply.status == 201
        except urllib.error.HTTPError as error:
            if error.code != 307:
                return False
            url = error.headers["Location"]
        except (urllib.error.URLError, OSError):
            return False
    return False


def main():
    processes = {1: start(1), 2: start(2)}
    processes[0] = start(0)
    times = []
    try:
        for kill in range(KILLS):
            master = None
            while master is None:
                health = health_of(URLS[1]) or health_of(URLS[2]) or health_of(URLS[0])
                master = health and health.get("master")
            victim = URLS.index(master)
            before = health_of(master)["seq"]
            killed_at = time.monotonic()
            processes[victim].send_signal(signal.SIGKILL)
            processes[victim].wait()
            others = [u for i, u in enumerate(URLS) if i != victim]
            attempt = 0
            while not append(others[attempt % 2], f"after kill {kill}", f"kill-{kill}"):
                attempt += 1
                time.sleep(0.01)
            took = time.monotonic() - killed_at
            times.append(took)
            print(f"kill {kill + 1}: {master} died; first 201 after {took * 1000:.0f} ms", flush=True)
            processes[victim] = start(victim)
            # Converged: the restarted node follows the new master and holds its log.
            while True:
                back = health_of(URLS[victim])
                leader = back and back.get("master") and health_of(back["master"])
                if back and leader and back.get("role") == "secondary" and back["seq"] == leader["seq"] >= before + 1:
                    break
                time.sleep(0.05)
    finally:
        for process in processes.values():
            process.send_signal(signal.SIGKILL)
    times.sort()
    percentile = lambda p: times[min(len(times) - 1, int(round(p / 100 * (len(times) - 1))))]
    print(f"{len(times)} kills: p50 {percentile(50) * 1000:.0f} ms, p99 {percentile(99) * 1000:.0f} ms, max {times[-1] * 1000:.0f} ms")


main()
