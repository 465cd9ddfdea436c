#!/usr/bin/env bash
# `make run`: start the embedded stack, wait until it is ready, show the
# pipeline working end to end, then keep it running until Ctrl-C (with
# CI=true or no terminal: stop after the demo).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=./bin/shopstream
log=.data/dev.log
mkdir -p .data
$bin dev >"$log" 2>&1 &
dev=$!
trap 'kill -TERM $dev 2>/dev/null; wait $dev 2>/dev/null || true' EXIT
echo "starting the embedded stack (log: $log)"
for _ in $(seq 1 240); do
  if grep -q "shopstream dev: ready" "$log"; then break; fi
  if ! kill -0 $dev 2>/dev/null; then cat "$log"; echo "shopstream dev exited"; exit 1; fi
  sleep 0.5
done
grep -q "shopstream dev: ready" "$log" || { cat "$log"; echo "the stack did not become ready in 120s"; exit 1; }
grep -v '^time=' "$log"

step() { echo; echo "\$ shopstream $*"; $bin "$@"; }
step bootstrap
step filter set phone --wait
step emulate --count 10000 --seed 7
step filter get
# The exact name of a product that passed the filter, for the search.
name=$(
  psql_dsn=$(cat .data/pg/dsn 2>/dev/null || true); \
  if [ -n "$psql_dsn" ] && command -v psql >/dev/null; then \
    for _ in $(seq 1 40); do n=$(psql "$psql_dsn" -Atc "select name from filtered_products order by name limit 1" 2>/dev/null || true); [ -n "$n" ] && break; sleep 0.5; done; echo "$n"; \
  fi)
if [ -n "$name" ]; then
  step search --user alice --wait "$name"
  step recs --user alice
fi
# The API takes a bearer token; dev made one and keeps it in .data/api-token.
token=$(cat .data/api-token)
echo
echo "\$ curl -X POST localhost:8080/api/v1/products  (no token)"
curl -s -X POST localhost:8080/api/v1/products -H 'Content-Type: application/json' -d '{}'
echo
echo "\$ curl -X POST localhost:8080/api/v1/products -H \"Authorization: Bearer \$(cat .data/api-token)\"  (a product with an image from the embedded image server)"
curl -s -X POST localhost:8080/api/v1/products -H 'Content-Type: application/json' -H "Authorization: Bearer $token" \
  -d '{"mallId":"mall-1","productId":"mug-1","title":"Red mug","content":"A mug","price":"9.50","imageUrl":"http://127.0.0.1:8080/images/red-mug.png"}'
echo
for _ in $(seq 1 40); do
  out=$(curl -s -H "Authorization: Bearer $token" localhost:8080/api/v1/complete-products/mug-1 || true)
  case "$out" in *'"key"'*) break ;; esac
  sleep 0.25
done
echo "\$ curl -H \"Authorization: Bearer …\" localhost:8080/api/v1/complete-products/mug-1"
echo "$out"
if [ -f .data/pg/dsn ] && command -v psql >/dev/null; then
  echo
  echo "\$ psql \"\$(cat .data/pg/dsn)\" -c 'select …count(*) from each table'"
  sleep 2
  psql "$(cat .data/pg/dsn)" -c "select (select count(*) from products) as products, (select count(*) from filtered_products) as filtered, (select count(*) from searches) as searches, (select count(*) from recommendations) as recommendations, (select count(*) from complete_products) as complete"
fi
step status || true
echo
echo "The stack is up. The Temporal Web UI at http://127.0.0.1:8233 shows every run"
echo "(Bootstrap, EmulateShop with its batch activities, StreamFilter with each change)."
if [ "${CI:-}" = "true" ] || [ ! -t 0 ]; then
  exit 0
fi
echo "Press Ctrl-C to stop."
wait $dev
