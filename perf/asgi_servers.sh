#!/usr/bin/env bash
# Compare ASGI servers for reev-api under the UI's polling load (wrk -t2 -c64, 10 s per row), each
# at its best as well as reev-api's own setting, one worker each, on a 200-session database.
# Usage: perf/asgi_servers.sh   (needs wrk, and the bench extra: make bench installs it, or
#        .venv/bin/pip install -e '.[test,bench]' for uvicorn[standard], which brings uvloop and httptools)
# BIN=path/to/venv/bin overrides the virtualenv.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
SECONDS_PER_ROW=${SECONDS_PER_ROW:-10}
for module in uvicorn uvloop httptools granian; do
  $BIN/python -c "import $module" 2>/dev/null || { echo "$module is not installed: $BIN/pip install -e '.[test,bench]'" >&2; exit 1; }
done
command -v wrk >/dev/null || { echo "wrk is not installed: apt-get install wrk" >&2; exit 1; }
work=$(mktemp -d)
pid=
# Stop a server and its workers, by their ids: SIGTERM, then SIGKILL if still there after 10 s
# (sets $stopped to "stopped" or "killed").
stop_server() {
  local kids
  kids=$(ps -o pid= --ppid "$1" || true)
  kill -TERM "$1" 2>/dev/null || true
  stopped=stopped
  for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$1" 2>/dev/null; then
    kill -KILL "$1" $kids 2>/dev/null || true
    stopped=killed
  fi
  { wait "$1"; } 2>/dev/null || true
}
trap '[ -n "$pid" ] && stop_server $pid; rm -rf "$work"' EXIT
mkdir -p "$work/sessions" "$work/benchmarks"
$BIN/python perf/corpus.py "$work/sessions" "$work/benchmarks" 200 >/dev/null
$BIN/reev-ingestd --sessions-dir "$work/sessions" --benchmarks-dir "$work/benchmarks" --db "$work/reev.db" --once 2>/dev/null
sessions=("$work"/sessions/session_*.json)
exec_id=$(basename "${sessions[0]}" .json)
exec_id=${exec_id#session_}
benchmarks=("$work"/benchmarks/*.yml)
bench=$(basename "${benchmarks[0]}" .yml)
paths=("e=/api/v1/benchmarks/$bench/status/$exec_id" "b=/api/v1/benchmarks/$bench"
       "r=/api/v1/agent-performance" "e=/api/v1/execution-logs/$bench?execution_id=$exec_id")

# The settings each server worker reads, as reev-api's main() hands them over (api/cli.py);
# server_pid is the process the worker must not outlive (its parent).
config() {
  printf '{"db": "%s", "cors_origins": [], "query_timeout": 2.0, "max_streams": 100, "stream_heartbeat": 15, "server_pid": %d, "port": %d}' \
    "$work/reev.db" "$1" "$2"
}
version() { $BIN/python -c "from importlib.metadata import version; print(version('$1'))"; }

# name | how it is started (reev-api runs Granian on asyncio's loop, named: api/serving.py)
servers=(
  "granian $(version granian), asyncio, HTTP/1 only (reev-api)|granian --loop asyncio --http 1"
  "granian $(version granian), uvloop, HTTP/1 only|granian --loop uvloop --http 1"
  "granian $(version granian), uvloop, HTTP/1 only, Rust tasks|granian --loop uvloop --http 1 --task-impl rust"
  "uvicorn $(version uvicorn), h11, asyncio (plain uvicorn)|uvicorn --loop asyncio --http h11"
  "uvicorn $(version uvicorn), httptools, uvloop (uvicorn[standard])|uvicorn --loop uvloop --http httptools"
)

echo "perf/asgi_servers.sh: $(date -u '+%Y-%m-%d %H:%M') UTC, commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- api daemon perf || echo ' + uncommitted changes'), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) before"
echo
echo "| server | If-None-Match | requests/s | p50 | p99 | errors |"
echo "|---|---|---|---|---|---|"
port=3901
unstoppable=()
for entry in "${servers[@]}"; do
  name=${entry%%|*}
  read -r server flags <<<"${entry#*|}"
  if [ "$server" = uvicorn ]; then
    # one process: the app (and its parent check) runs in uvicorn itself, a child of this shell
    ( export REEV_API_CONFIG="$(config $$ $port)"
      exec $BIN/uvicorn --factory api.cli:app_from_env --port $port $flags --log-level warning --no-access-log ) &
  else
    # Granian's workers are children of the Granian process, which is this subshell after exec
    ( me=$BASHPID      # (inside $( ) $BASHPID would be that substitution's own process)
      export REEV_API_CONFIG="$(config $me $port)"
      exec $BIN/granian --interface asgi --factory api.cli:app_from_env --port $port $flags --no-ws \
        --log-level warning ) &
  fi
  pid=$!
  up=0
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/api/v1/health" >/dev/null && { up=1; break; }; sleep 0.1; done
  [ $up = 1 ] || { echo "$name did not start" >&2; exit 1; }
  for etag in 0 1; do
    out=$(ETAG=$etag wrk -t2 -c64 -d${SECONDS_PER_ROW}s --timeout 5s --latency -s perf/polling.lua "http://127.0.0.1:$port" -- "${paths[@]}")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1=="50%" {print $2}' <<<"$out")
    p99=$(awk '$1=="99%" {print $2}' <<<"$out")
    bad=$(awk '/Non-2xx or 3xx/ {print $5}' <<<"$out")
    errors=$(awk '/Socket errors/ {gsub(",", ""); print $4 + $6 + $8 + $10}' <<<"$out")
    echo "| $name | $([ $etag = 1 ] && echo "yes ($(awk '/status_counts/ {print $3}' <<<"$out"))" || echo no) | $rps | $p50 | $p99 | $(( ${bad:-0} + ${errors:-0} )) |"
  done
  stop_server $pid
  [ $stopped = stopped ] || unstoppable+=("$name")
  pid=
  port=$((port + 1))
done
echo
for name in "${unstoppable[@]}"; do
  echo "$name did not stop within 10 s of SIGTERM: killed"
done
echo "load average $(cut -d' ' -f1-3 /proc/loadavg) after"
