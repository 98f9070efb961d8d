#!/usr/bin/env bash
# Side-by-side comparison of shared/bench/SCENARIOS.md, in one run, on one machine: bare axum
# (baseline), tower-scale's bench app, the Rust peer and the Node.js peer, each against its own
# fresh redis-server; per scenario also what a request costs Redis (commands and CPU).
#
#   scripts/bench/stack-side-by-side.sh              # all implementations, every scenario, one round
#   ROUNDS=3 DURATION=10 scripts/bench/stack-side-by-side.sh
#   IMPLS="bare-axum tower-scale" SCENARIOS=hello DURATION=2 scripts/bench/stack-side-by-side.sh
#
# env:
#   SHARED_DIR   the shared folder with bench/ and peers/ (default: `shared` next to the
#                repository root)
#   IMPLS        which implementations, in order (default: "bare-axum tower-scale tower-scale-l1
#                rust-tower node-express"); tower-scale-l1 is the bench app with BENCH_CACHE_L1=on
#                (/cached only: the cache's local tier in front of Redis, purges reaching every
#                instance); also available: tower-scale-no-local-copy, the bench app with
#                BENCH_SESSION_LOCAL=off (/session and /whoami only: every session read goes to
#                Redis), tower-scale-redis-hello, the bench app with BENCH_HELLO_LIMITER=redis
#                (/hello only: one Redis decision per request instead of HybridStore's leases), and
#                tower-scale-headers, the bench app with BENCH_RATELIMIT_HEADERS=on (/hello and
#                /limited only: the IETF RateLimit fields on every response)
#   ROUNDS       how many times the whole sequence runs (default 1); the report takes the
#                median of the rounds, so the implementations are interleaved in time
#   DURATION, THREADS, CONNECTIONS, WARM_CACHED: passed to run-scenarios.sh
#   SCENARIOS    which scenarios (default: "hello login session whoami limited cached json_gzip json"),
#                each run on its own (run-scenarios.sh with one scenario), PAUSE seconds apart (1)
#   OUT          results folder (default: target/side-by-side/<timestamp>)
#   RUST_PEER_TARGET_DIR  where the Rust peer is built (default: target/rust-tower-peer)
#   NODE_PEER_DEPS_DIR    where the Node peer's locked dependencies are installed with
#                         `npm ci` (default: target/node-express-peer)
# The peers are run from the shared folder unmodified and never written into: the Rust peer is
# built with its own Cargo.lock (--locked) into RUST_PEER_TARGET_DIR, the Node peer's
# dependencies are installed from its package-lock.json into NODE_PEER_DEPS_DIR and found
# through NODE_PATH. Each is then started with the environment its run.sh sets.
# Redis cost per scenario: CONFIG RESETSTAT and INFO cpu before, INFO commandstats and INFO cpu
# after; commands per request are all commands counted by INFO (those inside a Lua script
# included) over wrk's requests, Redis CPU per request is the used_cpu_user + used_cpu_sys delta
# over them. The logins that run-scenarios.sh makes before /session and /whoami (one per
# connection) are counted with the scenario.
# Writes OUT/results.txt (raw lines: round impl scenario req/s p99_ms non2xx), OUT/redis.txt
# (round impl scenario commands/request redis_us/request), OUT/table.md (ratios, Redis cost)
# and OUT/chart.svg.
# Installs wrk, curl, redis-server, redis-tools, python3 and npm from Debian's packages when missing.
set -euo pipefail
. "$(dirname "$0")/../lib/common.sh"
shared_dir
[ -f "$SHARED_DIR/bench/run-scenarios.sh" ] || die "no bench/run-scenarios.sh in SHARED_DIR=$SHARED_DIR"
IMPLS="${IMPLS:-bare-axum tower-scale tower-scale-l1 rust-tower node-express}"
ROUNDS="${ROUNDS:-1}"
OUT="${OUT:-$ROOT/target/side-by-side/$(date -u +%Y%m%dT%H%M%SZ)}"
RUST_PEER_TARGET_DIR="${RUST_PEER_TARGET_DIR:-$ROOT/target/rust-tower-peer}"
NODE_PEER_DEPS_DIR="${NODE_PEER_DEPS_DIR:-$ROOT/target/node-express-peer}"
mkdir -p "$OUT"
case "$ROUNDS" in '' | *[!0-9]* | 0) die "ROUNDS must be a positive integer" ;; esac

case " $IMPLS " in *" node-express "*) install_missing node:nodejs npm ;; esac
install_missing wrk curl redis-server redis-cli:redis-tools python3

# --- build everything before anything is timed ------------------------------------------------
for impl in $IMPLS; do
  case "$impl" in
    bare-axum | tower-scale | tower-scale-l1 | tower-scale-no-local-copy | tower-scale-redis-hello | \
      tower-scale-headers | rust-tower | node-express) ;;
    *) die "unknown implementation '$impl'" ;;
  esac
done
if ! (cd "$ROOT" && cargo metadata --no-deps --format-version 1 | grep -q '"name":"example-bench-app"'); then
  echo "$SCRIPT: examples/bench-app is not in the workspace" >&2
  exit 2
fi
echo "building tower-scale's bench app (release)"
(cd "$ROOT" && cargo build --release --quiet -p example-bench-app)
BENCH_APP="${CARGO_TARGET_DIR:-$ROOT/target}/release/example-bench-app"

case " $IMPLS " in *" rust-tower "*) build_rust_peer ;; esac
case " $IMPLS " in *" node-express "*) install_node_peer ;; esac

# --- a fresh Redis for each implementation -----------------------------------------------------
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill -TERM "$SERVER_PID" 2>/dev/null || true; fi
  stop_redis
  wait 2>/dev/null || true
}
trap cleanup EXIT
echo "results in $OUT"

# The scenarios of "$1" that were asked for (SCENARIOS), in order.
among() {
  local s out=""
  for s in $1; do
    case " $scenarios_all " in *" $s "*) out="$out $s" ;; esac
  done
  echo "${out# }"
}

# Runs in a background subshell and execs the server, so $! is the server's own pid.
start_impl() { # name port
  local name=$1 port=$2
  export PORT=$port
  case "$name" in
    bare-axum) BENCH_MODE=bare exec "$BENCH_APP" ;;
    tower-scale) BENCH_MODE=full exec "$BENCH_APP" ;;
    tower-scale-l1) BENCH_MODE=full BENCH_CACHE_L1=on exec "$BENCH_APP" ;;
    tower-scale-no-local-copy) BENCH_MODE=full BENCH_SESSION_LOCAL=off exec "$BENCH_APP" ;;
    tower-scale-redis-hello) BENCH_MODE=full BENCH_HELLO_LIMITER=redis exec "$BENCH_APP" ;;
    tower-scale-headers) BENCH_MODE=full BENCH_RATELIMIT_HEADERS=on exec "$BENCH_APP" ;;
    rust-tower) exec "$RUST_PEER" ;;
    # What run.sh does, with the dependencies found through NODE_PATH.
    node-express) NODE_ENV="${NODE_ENV:-production}" NODE_PATH="$NODE_PEER_DEPS_DIR/node_modules" \
                    exec node "$SHARED_DIR/peers/node-express/server.js" ;;
  esac
}

# Warns (stderr) when an implementation's answers differ from the contract's.
check_contract() { # name base
  local name=$1 base=$2 tmp
  tmp="$(mktemp)"
  if ! curl -fsS -m 5 -o "$tmp" "$base/json" || ! cmp -s "$tmp" "$SHARED_DIR/bench/data/doc-20k.json"; then
    echo "$SCRIPT: WARNING: $name's /json is not shared/bench/data/doc-20k.json" >&2
  fi
  if curl -fsS -m 5 -o "$tmp" "$base/cached/contract-check" && [ "$(wc -c <"$tmp")" -ne 1024 ]; then
    echo "$SCRIPT: WARNING: $name's /cached/{id} document is not 1024 bytes" >&2
  fi
  rm -f "$tmp"
}

: >"$OUT/results.txt"
: >"$OUT/redis.txt"
scenarios_all="${SCENARIOS:-hello login session whoami limited cached json_gzip json}"
for round in $(seq "$ROUNDS"); do
  for impl in $IMPLS; do
    start_redis
    export REDIS_URL
    port="$(free_port)"
    echo "== round $round: $impl on port $port ($(cut -d' ' -f1-3 /proc/loadavg) load)"
    start_impl "$impl" "$port" >>"$OUT/$impl.log" 2>&1 &
    SERVER_PID=$!
    up=0
    for _ in $(seq 600); do
      if curl -fsS -m 2 -o /dev/null "http://127.0.0.1:$port/hello" 2>/dev/null; then up=1; break; fi
      kill -0 "$SERVER_PID" 2>/dev/null || break
      sleep 0.2
    done
    if [ "$up" -ne 1 ]; then
      echo "$SCRIPT: $impl did not start; see $OUT/$impl.log" >&2
      kill -TERM "$SERVER_PID" 2>/dev/null || true
      wait "$SERVER_PID" 2>/dev/null || true
      SERVER_PID=""
      stop_redis
      continue
    fi
    scenarios="$scenarios_all"
    if [ "$impl" = bare-axum ] || [ "$impl" = tower-scale-redis-hello ]; then
      scenarios="$(among "hello")"
    elif [ "$impl" = tower-scale-headers ]; then
      scenarios="$(among "hello limited")"
    elif [ "$impl" = tower-scale-l1 ]; then
      scenarios="$(among "cached")"
    elif [ "$impl" = tower-scale-no-local-copy ]; then
      scenarios="$(among "session whoami")"
    else
      check_contract "$impl" "http://127.0.0.1:$port"
      flush_redis
    fi
    first=1
    for scenario in $scenarios; do
      [ "$first" = 1 ] || sleep "${PAUSE:-1}"
      first=0
      redis-cli -p "$REDIS_PORT" config resetstat >/dev/null
      cpu0="$(redis_cpu_us "$REDIS_PORT")"
      SCENARIOS="$scenario" OUT_DIR="$OUT/wrk-$round-$impl" "$SHARED_DIR/bench/run-scenarios.sh" \
        "http://127.0.0.1:$port" | sed "s/^/$round $impl /" | tee -a "$OUT/results.txt" || true
      cpu1="$(redis_cpu_us "$REDIS_PORT")"
      commands="$(redis_commands "$REDIS_PORT")"
      redis-cli -p "$REDIS_PORT" info commandstats | tr -d '\r' | grep '^cmdstat_' \
        >"$OUT/commandstats-$round-$impl-$scenario.txt" || true
      requests="$(awk '/requests in/ { print $1 }' "$OUT/wrk-$round-$impl/$scenario.txt" 2>/dev/null || true)"
      if [ -n "$requests" ] && [ "$requests" -gt 0 ]; then
        awk -v r="$round" -v i="$impl" -v s="$scenario" -v c="$commands" -v n="$requests" \
          -v cpu="$((cpu1 - cpu0))" 'BEGIN { printf "%s %s %s %.4f %.3f\n", r, i, s, c / n, cpu / n }' \
          | tee -a "$OUT/redis.txt"
      fi
    done
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    rc=0; wait "$SERVER_PID" 2>/dev/null || rc=$?
    [ "$rc" -eq 0 ] || echo "$SCRIPT: $impl exited with status $rc after SIGTERM" >&2
    SERVER_PID=""
    stop_redis
  done
done

{
  echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "cpu: $(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -n1), $(nproc) vCPU"
  echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "settings: ROUNDS=$ROUNDS DURATION=${DURATION:-10} THREADS=${THREADS:-1} CONNECTIONS=${CONNECTIONS:-64}"
  echo "versions: $(rustc --version), node $(node --version 2>/dev/null || echo -), $(redis-server --version | cut -d' ' -f1-3), $(wrk -v 2>&1 | head -n1 | cut -d' ' -f1-2)"
} >"$OUT/machine.txt"
python3 "$ROOT/scripts/lib/side-by-side-report.py" "$OUT/results.txt" "$OUT/table.md" "$OUT/chart.svg" \
  "$OUT/redis.txt"
cat "$OUT/machine.txt" "$OUT/table.md"
echo "chart: $OUT/chart.svg"
