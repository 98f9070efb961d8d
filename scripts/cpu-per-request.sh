#!/usr/bin/env bash
# CPU time per request of a server and of Redis under wrk, for servers of the shared bench
# contract (../shared/bench/SCENARIOS.md), rounds interleaved. Usage:
#
#   scripts/cpu-per-request.sh <scenario> <label>=<server binary> [<label>=<binary> ...]
#
# <scenario> is a contract path with its wrk script: limited, cached, login, session or hello.
# Starts one redis-server on a free loopback port; per round and per server: FLUSHALL, start it
# (PORT, REDIS_URL), a WARM-second untimed wrk pass (fills /cached), CONFIG RESETSTAT, wrk -t1 -c64 for
# DURATION seconds, reading the CPU time (utime + stime) of the server and of Redis around it.
# Prints requests/s, server µs/request, Redis µs/request and the usec_per_call of the
# scenario's main Redis command, then the medians per server.
# Environment: ROUNDS (3), DURATION (5), WARM (2), CACHED_IDS (1000, for cached), SHARED (the
# folder holding bench/). Needs wrk, curl, python3, redis-server and redis-cli (Debian: wrk,
# curl, python3, redis-server, redis-tools); the test suite does not.
set -euo pipefail
SCENARIO="$1"; shift
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-5}"
WARM="${WARM:-2}"
HERE="$(cd "$(dirname "$0")" && pwd)"
SHARED="${SHARED:-$HERE/../../shared}"
[ -d "$SHARED/bench" ] || SHARED=/work/shared
case "$SCENARIO" in
  limited) URL_PATH=/limited; LUA="$SHARED/bench/limited.lua"; CMD=evalsha ;;
  cached) URL_PATH=/cached/; LUA="$SHARED/bench/cached.lua"; CMD=get; export CACHED_IDS="${CACHED_IDS:-1000}" ;;
  login) URL_PATH=/login; LUA="$SHARED/bench/login.lua"; CMD=exec ;;
  session) URL_PATH=/session; LUA="$SHARED/bench/session.lua"; CMD=hget ;;
  hello) URL_PATH=/hello; LUA=""; CMD=evalsha ;;
  *) echo "unknown scenario $SCENARIO" >&2; exit 2 ;;
esac
TICKS="$(getconf CLK_TCK)"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

REDIS_PORT="$(free_port)"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no >/dev/null 2>&1 &
REDIS_PID=$!
SERVER_PID=""
RESULTS="$(mktemp)"
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
  kill "$REDIS_PID" 2>/dev/null || true
  rm -f "$RESULTS"
}
trap cleanup EXIT
rcli() { redis-cli -p "$REDIS_PORT" "$@"; }
for _ in $(seq 50); do rcli PING >/dev/null 2>&1 && break; sleep 0.1; done
per_call() { rcli INFO commandstats | tr -d '\r' | awk -F'[:,=]' -v c="cmdstat_$1" '$1 == c { for (i = 2; i < NF; i++) if ($i == "usec_per_call") print $(i + 1) }'; }
wrk_args=(-t1 -c64)
[ -n "$LUA" ] && wrk_args+=(-s "$LUA")

printf '%-14s %5s %10s %14s %13s %10s\n' impl round req/s server-us/req redis-us/req "$CMD-usec"
for round in $(seq "$ROUNDS"); do
  for spec in "$@"; do
    label="${spec%%=*}"; bin="${spec#*=}"
    rcli FLUSHALL >/dev/null
    PORT="$(free_port)"
    PORT="$PORT" REDIS_URL="redis://127.0.0.1:$REDIS_PORT" "$bin" >/dev/null 2>&1 &
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
