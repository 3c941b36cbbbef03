#!/usr/bin/env python3
"""Runs wrk (one thread, CONNECTIONS keep-alive connections) against POST URL with BODY and
prints one row of the run.sh table: wrk-row.py SYSTEM CONFIG URL BODY CONNECTIONS SECONDS.
An independent check of `replog bench`: a different generator, written in C."""
import os
import re
import resource
import subprocess
import sys
import tempfile

system, config, url, body, connections, seconds = sys.argv[1:7]
script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
script.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = %s\n'
             % ('"' + body.replace("\\", "\\\\").replace('"', '\\"') + '"'))
script.close()
before = resource.getrusage(resource.RUSAGE_CHILDREN)
output = subprocess.run(["wrk", "-t1", "-c" + connections, "-d" + seconds + "s", "--latency", "-s", script.name, url],
                        capture_output=True, text=True, check=True).stdout
after = resource.getrusage(resource.RUSAGE_CHILDREN)
os.unlink(script.name)


def milliseconds(percentile):
    value, unit = re.search(r"^\s+%s%%\s+([\d.]+)(us|ms|s)\s*$" % percentile, output, re.M).groups()
    return float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit]


rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", output))
errors += sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", output))
cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) / float(seconds)
print("| %s | %s | %s | %.0f | %.3f | %.3f | n/a | %d | %.2f |"
      % (system, config, connections, rate, milliseconds(50), milliseconds(99), errors, cpu))
