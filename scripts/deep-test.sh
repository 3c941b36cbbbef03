#!/usr/bin/env bash
# The deep run: every simulation at full breadth (10,000 + 10,000 + 6,000 schedules, the
# seeds that caught each mutant among them), the chaos runs and the real-network nemesis
# (as root) at full length, after the
# quick run of `swift test --disable-xctest`. CI runs it too (.ci/run). Extra arguments go to
# `swift test` (e.g. --skip-build). docs/testing.md says how long each part takes.
set -euo pipefail
cd "$(dirname "$0")/.."
export REPLOG_DEEP=1
exec swift test --disable-xctest --filter 'ReplogSimulationTests|ChaosTests|RealNetworkTests' "$@"
