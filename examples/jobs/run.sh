#!/usr/bin/env bash
# example-jobs end to end, in one command:
#   examples/jobs/run.sh
# Starts a throw-away redis-server on a free loopback port, the HTTP server (HOST and PORT, default
# 127.0.0.1:3000) and one worker; Ctrl-C (or SIGTERM) stops all three gracefully.
# Any JOBS_* setting in the environment is passed on (e.g. JOBS_MAX_RETRIES=1).
set -euo pipefail
cd "$(dirname "$0")/../.."

command -v redis-server >/dev/null 2>&1 || {
  echo "redis-server is missing: apt-get install -y redis-server (scripts/test.sh does it)" >&2
  exit 1
}
cargo build -q -p example-jobs --bins
bin="${CARGO_TARGET_DIR:-target}/debug"

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null \
    || shuf -i 20000-40000 -n 1
}
port=$(free_port)
dir=$(mktemp -d)
pids=()
redis_pid=
cleanup() {
  trap - EXIT INT TERM
  # The server and the worker first (the worker finishes its jobs), Redis last.
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait "${pids[@]}" 2>/dev/null || true
  if [ -n "$redis_pid" ]; then kill -TERM "$redis_pid" 2>/dev/null || true; wait "$redis_pid" 2>/dev/null || true; fi
  rm -rf "$dir"
}
trap cleanup EXIT INT TERM

redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" \
  --daemonize no --loglevel warning &
redis_pid=$!
for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.05; done

export REDIS_URL="redis://127.0.0.1:$port"
"$bin/jobs-worker" &
pids+=($!)
"$bin/jobs-server" &
pids+=($!)

addr="${HOST:-127.0.0.1}:${PORT:-3000}"
cat <<MSG

  Redis on 127.0.0.1:$port; server on http://$addr. Try:
    curl -s -X POST $addr/videos -H 'content-type: application/json' -d '{"frames":40,"rounds":3000}'
    curl -s $addr/videos/<id>
  Ctrl-C stops everything.

MSG
wait -n "${pids[@]}" "$redis_pid"
