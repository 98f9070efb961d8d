#!/usr/bin/env bash
# Side-by-side comparison of ../shared/bench/SCENARIOS.md, in one run, on one machine, against
# one Redis: bare axum (baseline), tower-scale's bench app, the Rust peer and the Node.js peer.
#
#   scripts/bench-compare.sh                  # all implementations, every scenario
#   IMPLS="tower-scale rust-tower" DURATION=5 scripts/bench-compare.sh
#
# env:
#   SHARED_DIR   the shared folder with bench/ and peers/ (default: ../shared next to the repo)
#   IMPLS        which implementations, in order (default: "bare-axum tower-scale rust-tower node-express")
#   DURATION, THREADS, CONNECTIONS, SCENARIOS, WARM_CACHED: passed to run-scenarios.sh
#   OUT          results folder (default: target/bench-compare/<timestamp>)
# Writes OUT/results.txt (raw lines), OUT/table.md (ratios) and OUT/chart.svg.
# Installs wrk, redis-server and nodejs/npm from Debian's packages when missing.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SHARED_DIR="${SHARED_DIR:-$ROOT/../shared}"
SHARED_DIR="$(cd "$SHARED_DIR" && pwd)"
IMPLS="${IMPLS:-bare-axum tower-scale rust-tower node-express}"
OUT="${OUT:-$ROOT/target/bench-compare/$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$OUT"

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v redis-server >/dev/null || need+=(redis-server)
command -v redis-cli >/dev/null || need+=(redis-tools)
case " $IMPLS " in *" node-express "*) command -v npm >/dev/null || need+=(nodejs npm) ;; esac
if [ "${#need[@]}" -gt 0 ]; then
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

REDIS_PORT="$(free_port)"
REDIS_DIR="$(mktemp -d)"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$REDIS_DIR" \
  --daemonize no --loglevel warning >"$OUT/redis.log" 2>&1 &
REDIS_PID=$!
SERVER_PID=""
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
  kill "$REDIS_PID" 2>/dev/null || true
  rm -rf "$REDIS_DIR"
}
trap cleanup EXIT
for _ in $(seq 100); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
export REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
echo "redis on $REDIS_URL; results in $OUT"

if ! (cd "$ROOT" && cargo metadata --no-deps --format-version 1 | grep -q '"name":"example-bench-app"'); then
  echo "bench-compare: examples/bench-app (tower-scale's implementation of SCENARIOS.md) is not in" >&2
  echo "the workspace yet; it needs the session, cache and compression crates." >&2
  exit 2
fi
echo "building tower-scale's bench app (release)"
(cd "$ROOT" && cargo build --release --quiet -p example-bench-app)
BENCH_APP="$ROOT/target/release/example-bench-app"
if [ -n "${CARGO_TARGET_DIR:-}" ]; then BENCH_APP="$CARGO_TARGET_DIR/release/example-bench-app"; fi

start_impl() { # name port
  local name=$1 port=$2
  case "$name" in
    bare-axum) PORT=$port BENCH_MODE=bare "$BENCH_APP" ;;
    tower-scale) PORT=$port "$BENCH_APP" ;;
    rust-tower) PORT=$port "$SHARED_DIR/peers/rust-tower/run.sh" ;;
    node-express) PORT=$port "$SHARED_DIR/peers/node-express/run.sh" ;;
    *) echo "unknown implementation $name" >&2; return 2 ;;
  esac
}

: >"$OUT/results.txt"
for impl in $IMPLS; do
  redis-cli -p "$REDIS_PORT" flushall >/dev/null
  port="$(free_port)"
  echo "== $impl on port $port"
  start_impl "$impl" "$port" >"$OUT/$impl.log" 2>&1 &
  SERVER_PID=$!
  up=0
  for _ in $(seq 600); do
    if curl -fsS -m 2 -o /dev/null "http://127.0.0.1:$port/hello" 2>/dev/null; then up=1; break; fi
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.5
  done
  if [ "$up" -ne 1 ]; then
    echo "$impl did not start; see $OUT/$impl.log" >&2
    kill "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""
    continue
  fi
  scenarios="${SCENARIOS:-hello login session limited cached json_gzip json}"
  [ "$impl" = bare-axum ] && scenarios="hello"
  SCENARIOS="$scenarios" OUT_DIR="$OUT/wrk-$impl" "$SHARED_DIR/bench/run-scenarios.sh" \
    "http://127.0.0.1:$port" | sed "s/^/$impl /" | tee -a "$OUT/results.txt" || true
  kill -TERM "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
done

python3 "$ROOT/scripts/bench-report.py" "$OUT/results.txt" "$OUT/table.md" "$OUT/chart.svg"
cat "$OUT/table.md"
echo "chart: $OUT/chart.svg"
