#!/usr/bin/env bash
# CPU time per request of a server and of Redis under wrk, for servers of the shared bench
# contract (SCENARIOS.md in the shared folder), rounds interleaved.
#
#   scripts/bench/stack-cpu-per-request.sh <scenario> <label>=<server binary> [<label>=<binary> ...]
#   e.g. scripts/bench/stack-cpu-per-request.sh cached tower-scale=target/release/example-bench-app \
#          rust-tower=target/rust-tower-peer/release/rust-tower-peer
#
#   scripts/bench/stack-cpu-per-request.sh cached tower-scale-l1="env BENCH_CACHE_L1=on target/release/example-bench-app" ...
#
# <scenario> is a contract path with its wrk script: limited, cached, login, session, whoami or
# hello. A server may be given as a command with arguments (e.g. `env VAR=value binary`), split
# on spaces; it must exec the server, so that its pid is the server's.
# Starts one redis-server on a free loopback port; per round and per server: FLUSHALL, start it
# (PORT, REDIS_URL), a WARM-second untimed wrk pass (fills /cached), CONFIG RESETSTAT, wrk -t1
# -c64 for DURATION seconds, reading the CPU time (utime + stime) of the server and of Redis
# around it. Prints requests/s, server µs/request, Redis µs/request and the usec_per_call of
# the scenario's main Redis command, then the medians per server.
# Environment: ROUNDS (3), DURATION (5), WARM (2), CACHED_IDS (1000, for cached), SHARED_DIR.
# Needs wrk, curl, python3, redis-server and redis-cli.
set -euo pipefail
. "$(dirname "$0")/../lib/common.sh"
[ $# -ge 2 ] || die "usage: $SCRIPT <scenario> <label>=<server binary>..."
need wrk curl
shared_dir
SCENARIO="$1"; shift
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-5}"
WARM="${WARM:-2}"
case "$SCENARIO" in
  limited) URL_PATH=/limited; LUA="$SHARED_DIR/bench/limited.lua"; CMD="evalsha" ;;
  cached) URL_PATH=/cached/; LUA="$SHARED_DIR/bench/cached.lua"; CMD="get"; export CACHED_IDS="${CACHED_IDS:-1000}" ;;
  login) URL_PATH=/login; LUA="$SHARED_DIR/bench/login.lua"; CMD="exec" ;;
  session) URL_PATH=/session; LUA="$SHARED_DIR/bench/session.lua"; CMD="hget" ;;
  whoami) URL_PATH=/whoami; LUA="$SHARED_DIR/bench/session.lua"; CMD="hgetall"; export LOGIN_PATH=/login ;;
  hello) URL_PATH=/hello; LUA=""; CMD="evalsha" ;;
  *) die "unknown scenario '$SCENARIO' (limited, cached, login, session, whoami or hello)" ;;
esac
TICKS="$(getconf CLK_TCK)"
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
SERVER_PID=""
RESULTS="$(mktemp)"
cleanup() {
  [ -z "$SERVER_PID" ] || kill "$SERVER_PID" 2>/dev/null || true
  stop_redis
  rm -f "$RESULTS"
}
trap cleanup EXIT
start_redis
rcli() { redis-cli -p "$REDIS_PORT" "$@"; }
per_call() { rcli INFO commandstats | tr -d '\r' | awk -F'[:,=]' -v c="cmdstat_$1" '$1 == c { for (i = 2; i < NF; i++) if ($i == "usec_per_call") print $(i + 1) }'; }
wrk_args=(-t1 -c64)
[ -n "$LUA" ] && wrk_args+=(-s "$LUA")

printf '%-14s %5s %10s %14s %13s %10s\n' impl round req/s server-us/req redis-us/req "$CMD-usec"
for round in $(seq "$ROUNDS"); do
  for spec in "$@"; do
    label="${spec%%=*}"; bin="${spec#*=}"
    flush_redis
    PORT="$(free_port)"
    # shellcheck disable=SC2086 # a command with arguments, split on spaces
    PORT="$PORT" REDIS_URL="$REDIS_URL" $bin >/dev/null 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 100); do curl -fs "http://127.0.0.1:$PORT/hello" >/dev/null 2>&1 && break; sleep 0.1; done
    wrk "${wrk_args[@]}" -d"${WARM}s" "http://127.0.0.1:$PORT$URL_PATH" >/dev/null 2>&1
    rcli CONFIG RESETSTAT >/dev/null
    s0="$(cpu_ticks "$SERVER_PID")"; r0="$(cpu_ticks "$REDIS_PID")"
    out="$(wrk "${wrk_args[@]}" -d"${DURATION}s" "http://127.0.0.1:$PORT$URL_PATH")"
    s1="$(cpu_ticks "$SERVER_PID")"; r1="$(cpu_ticks "$REDIS_PID")"
    kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""
    n="$(echo "$out" | awk '/requests in/ {print $1}')"
    rps="$(echo "$out" | awk '/Requests\/sec/ {print $2}')"
    line="$(awk -v l="$label" -v r="$round" -v rps="$rps" -v n="$n" -v s="$((s1 - s0))" \
      -v rd="$((r1 - r0))" -v t="$TICKS" -v c="$(per_call "$CMD")" \
      'BEGIN { printf "%-14s %5s %10.0f %14.2f %13.2f %10s\n", l, r, rps, s * 1e6 / t / n, rd * 1e6 / t / n, (c == "" ? "-" : c) }')"
    echo "$line"; echo "$line" >>"$RESULTS"
  done
done
echo "medians:"
for spec in "$@"; do
  label="${spec%%=*}"
  for col in 3 4 5; do
    awk -v l="$label" -v c="$col" '$1 == l { print $c }' "$RESULTS" | sort -g |
      awk '{ v[NR] = $1 } END { printf "%s ", v[int((NR + 1) / 2)] }'
  done | awk -v l="$label" '{ printf "%-14s req/s %s  server %s us/req  redis %s us/req\n", l, $1, $2, $3 }'
done
