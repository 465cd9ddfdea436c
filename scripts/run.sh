#!/usr/bin/env bash
# `make run`: start the embedded stack, wait until it is ready, show the
# pipeline working, then keep it running until Ctrl-C (CI=true: stop).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=./bin/shopstream
log=.data/dev.log
mkdir -p .data
$bin dev >"$log" 2>&1 &
dev=$!
trap 'kill -TERM $dev 2>/dev/null; wait $dev 2>/dev/null || true' EXIT
echo "starting the embedded stack (log: $log)"
for _ in $(seq 1 120); do
  if grep -q "shopstream dev: ready" "$log"; then break; fi
  if ! kill -0 $dev 2>/dev/null; then cat "$log"; echo "shopstream dev exited"; exit 1; fi
  sleep 0.5
done
grep -q "shopstream dev: ready" "$log" || { cat "$log"; echo "the stack did not become ready in 60s"; exit 1; }
grep -v '^time=' "$log"
step() { echo; echo "\$ shopstream $*"; $bin "$@"; }
step bootstrap
echo
echo "The stack is up. Open the Temporal Web UI at http://127.0.0.1:8233 to see every run."
if [ "${CI:-}" = "true" ] || [ ! -t 0 ]; then
  exit 0
fi
echo "Press Ctrl-C to stop."
wait $dev
