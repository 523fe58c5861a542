#!/usr/bin/env bash
# Compare ASGI servers for reev-api under the UI's polling load (wrk, 64 connections).
# Usage: perf/asgi_servers.sh  (needs wrk: apt-get install wrk; granian: pip install granian)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/sessions" "$work/benchmarks"
$BIN/python perf/corpus.py "$work/sessions" "$work/benchmarks" 200 >/dev/null
$BIN/reev-ingestd --sessions-dir "$work/sessions" --benchmarks-dir "$work/benchmarks" --db "$work/reev.db" --once 2>/dev/null
exec_id=$(ls "$work/sessions" | grep -m1 '^session_' | sed 's/^session_//; s/\.json$//')
bench=$(ls "$work/benchmarks" | head -1 | sed 's/\.yml$//')
paths=("/api/v1/benchmarks/$bench/status/$exec_id" "/api/v1/benchmarks/$bench"
       "/api/v1/agent-performance" "/api/v1/execution-logs/$bench?execution_id=$exec_id")
export REEV_API_CONFIG="{\"db\": \"$work/reev.db\", \"cors_origins\": [], \"query_timeout\": 2.0, \"max_streams\": 100, \"stream_heartbeat\": 15}"
port=3901
echo "| server | If-None-Match | requests/s | p50 ms | p99 ms | non-2xx/3xx |"
echo "|---|---|---|---|---|---|"
for server in uvicorn granian; do
  if [ $server = uvicorn ]; then
    $BIN/uvicorn --factory api.cli:app_from_env --port $port --log-level warning --no-access-log &
  else
    $BIN/granian --interface asgi --factory api.cli:app_from_env --port $port --log-level warning --no-ws &
  fi
  pid=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/api/v1/health" >/dev/null && break; sleep 0.1; done
  for etag in 0 1; do
    out=$(ETAG=$etag wrk -t2 -c64 -d10s --latency -s perf/polling.lua "http://127.0.0.1:$port" -- "${paths[@]}")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1=="50%" {print $2}' <<<"$out")
    p99=$(awk '$1=="99%" {print $2}' <<<"$out")
    bad=$(awk '/Non-2xx or 3xx/ {print $5}' <<<"$out")
    echo "| $server | $([ $etag = 1 ] && echo yes || echo no) | $rps | $p50 | $p99 | ${bad:-0} |"
  done
  kill $pid; wait $pid 2>/dev/null || true
  port=$((port + 1))
done
