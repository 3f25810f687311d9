#!/usr/bin/env bash
# make demo: serve the demo models on a fresh database, replay the held-out
# Iris rows with their labels, then keep serving so the report can be read.
set -euo pipefail
cd "$(dirname "$0")/.."

addr=${ADDR:-127.0.0.1:8080}
db=${DEMO_DB:-demo.db}
rm -f "$db" "$db-wal" "$db-shm"

./bin/understudy serve --models-dir models --primary iris-v1 --addr "$addr" --db "$db" \
  --log-format console --log-level warn &
server=$!
trap 'kill -TERM $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT INT TERM

for _ in $(seq 1 100); do
  curl -fs "http://$addr/readyz" >/dev/null 2>&1 && break
  kill -0 $server 2>/dev/null || { echo "demo: the server did not start" >&2; exit 1; }
  sleep 0.1
done

./bin/understudy replay --url "http://$addr" --rate 20 testdata/iris-holdout.jsonl

echo
echo "  The report is ready: http://$addr/report"
echo "  (Ctrl-C stops the server.)"
echo
wait $server
