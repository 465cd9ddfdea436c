#!/usr/bin/env bash
# `make chaos`: runs the fault suite (internal/chaos) over SEEDS schedules
# (seeds 1 to SEEDS), or replays one with SEED=…, and prints one line per
# schedule, the seed and schedule of any that failed, and the summary last.
# The exit status is the suite's.
set -uo pipefail
cd "$(dirname "$0")/.."
CHAOS_SEEDS="${SEEDS:-50}" CHAOS_SEED="${SEED:-}" ${GO:-go} test ./internal/chaos -run 'TestChaos$' -count=1 -v -timeout 0 2>&1 |
  grep --line-buffered -v -E '^(=== RUN|--- (PASS|FAIL)|PASS$|FAIL$|ok[[:space:]]|FAIL[[:space:]])|^[[:space:]]+chaos_test\.go:[0-9]+: seed [0-9]+: '
