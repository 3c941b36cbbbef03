#!/usr/bin/env python3
"""The end of run.sh: prints the table (each row's median round) and issue 17's targets.

targets.py ROWS_DIR ROUNDS, where ROWS_DIR holds one file per row and round, NN.ROUND, each
one line of the table. A target is a ratio of two rows of the same round (the machine's
speed drifts between rounds, and the baselines drift with it); it is worked out in every
round, and the median of the rounds decides whether it is met.
"""
import os
import statistics
import sys

rows_dir, rounds = sys.argv[1], int(sys.argv[2])


def cells(line):
    parts = [part.strip() for part in line.strip().strip("|").split("|")]
    return {"system": parts[0], "config": parts[1], "clients": int(parts[2]), "ops": float(parts[3]),
            "p50": float(parts[4]), "line": line.rstrip("\n")}


# rounds_of[n][r]: row n of round r (1-based rounds).
rounds_of = {}
for name in sorted(os.listdir(rows_dir)):
    number, round_number = name.split(".")
    with open(os.path.join(rows_dir, name)) as file:
        text = file.read().strip()
    if text:
        rounds_of.setdefault(int(number), {})[int(round_number)] = cells(text)

print("| system | configuration | clients | ops/s | p50 ms | p99 ms | p99.9 ms | errors | bench CPU (cores) |")
print("|---|---|---|---|---|---|---|---|---|")
for number in sorted(rounds_of):
    runs = sorted(rounds_of[number].values(), key=lambda row: row["ops"])
    print(runs[(len(runs) - 1) // 2]["line"])  # the median round (the lower one of two)


def find(round_number, system, config, clients):
    for runs in rounds_of.values():
        row = runs.get(round_number)
        if row and row["system"].startswith(system) and row["config"] == config and row["clients"] == clients:
            return row
    return None


def floor(clients): return ("HTTP floor", "Hummingbird POST → 201", clients)
def replog(config, clients): return ("replog", config, clients)


# Each NATS cluster is known by its configuration: the version of Debian's may change.
nats_quorum = ("NATS JetStream", "R3 file stream, ack from a quorum (2 of 3)", 64)
nats_fsync = ("NATS JetStream", "R3 file stream, fsync every message, quorum ack", 64)
failover_w2 = replog("fsync always, failover (fsync overlaps replication), w=2", 64)

def ratio(top, bottom, key):
    def measure(round_number):
        a, b = find(round_number, *top), find(round_number, *bottom)
        if not a or not b or not b[key]:
            return None
        value = a[key] / b[key]
        shown = "%.0f / %.0f" % (a[key], b[key]) if key == "ops" else "%.3f / %.3f ms" % (a[key], b[key])
        return value, "%.2f× (%s)" % (value, shown)
    return measure


def megabytes(round_number):
    row = find(round_number, *replog("in memory, w=3, 1 MiB messages", 8))
    if not row:
        return None
    value = row["ops"] * 1.048576
    return value, "%.0f MB/s (%.0f appends/s)" % (value, row["ops"])


# (name, measure(round) -> (value, shown) or None, how the median is shown, is_met(median) or None)
targets = [
    ("1. in memory, `w=3`, 64 clients ≥ 0.6× the HTTP floor",
     ratio(replog("in memory, w=3", 64), floor(64), "ops"), "%.2f×", lambda v: v >= 0.6),
    ("2. in memory, `w=2`, 64 clients ≥ 1.2× NATS JetStream R3 (Debian's, 2.9 here)",
     ratio(replog("in memory, w=2", 64), nats_quorum, "ops"), "%.2f×", lambda v: v >= 1.2),
    ("3. `--fsync always`, `w=2`, 64 clients ≥ 1.2× NATS 2.15 `sync_interval: always` "
     "(with `--failover`: the master's fsync overlaps the replication, as the issue asks)",
     ratio(failover_w2, nats_fsync, "ops"), "%.2f×", lambda v: v >= 1.2),
    ("3, without `--failover` (the master fsyncs before it replicates; shown, not judged)",
     ratio(replog("fsync always, w=2", 64), nats_fsync, "ops"), "%.2f×", None),
    ("4a. one client, in memory, `w=3`: median ≤ 2× Redis `RPUSH` + `WAIT 2 0`",
     ratio(replog("in memory, w=3", 1), ("Redis 7", "RPUSH + WAIT 2 0, no persistence", 1), "p50"), "%.2f×", lambda v: v <= 2),
    ("4b. one client, in memory, `w=1`: median ≤ 1.5× the floor",
     ratio(replog("in memory, w=1", 1), floor(1), "p50"), "%.2f×", lambda v: v <= 1.5),
    ("5. 1 MiB messages, `w=3`, 8 clients ≥ 500 MB/s of payload", megabytes, "%.0f MB/s", lambda v: v >= 500),
]

print()
print("Issue 17's targets, each from rows of one round%s:" % ("" if rounds == 1 else "; met or not by the median of the rounds"))
print()
print("| target | " + " | ".join("round %d" % r for r in range(1, rounds + 1)) + (" | median" if rounds > 1 else "") + " | met? |")
print("|---|" + "---|" * (rounds + (2 if rounds > 1 else 1)))
for name, measure, median_format, is_met in targets:
    measured = [measure(r) for r in range(1, rounds + 1)]
    values = [m[0] for m in measured if m]
    shown = [m[1] if m else "—" for m in measured]
    median = statistics.median_low(values) if values else None  # (of two rounds, the lower)
    if rounds > 1:
        shown.append(median_format % median if median is not None else "—")
    verdict = "—" if is_met is None or median is None else ("yes" if is_met(median) else "no")
    print("| %s | %s | %s |" % (name, " | ".join(shown), verdict))
