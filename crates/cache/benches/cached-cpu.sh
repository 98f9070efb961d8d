#!/usr/bin/env bash
# CPU time per `GET /cached/{id}` hit of a server and of Redis under wrk, for servers of the
# shared bench contract (shared/bench/SCENARIOS.md). Usage:
#
#   crates/cache/benches/cached-cpu.sh <label>=<server binary> [<label>=<binary> ...]
#
# e.g. tower-scale=target/release/example-bench-app
#      rust-tower=/work/targets/rust-tower-peer/release/rust-tower-peer
#
# Starts one redis-server on a free loopback port, then ROUNDS times, for each server in turn
# (interleaved): FLUSHALL, start it (PORT, REDIS_URL), fill the cache with an untimed WARM-second
# wrk pass over the ids, reset Redis's stats, run wrk (-t1 -c64) for DURATION seconds, and read
# the CPU time (utime + stime, /proc/<pid>/stat) that the server and Redis used during the run.
# Prints, per run: requests/s, server µs per request, Redis µs per request, and Redis's
# usec_per_call of GET and HGET (INFO commandstats); then the median of each per server.
# Environment: ROUNDS (3), DURATION (5), WARM (3), CACHED_IDS (100), SHARED (../../shared or
# /work/shared: the folder holding bench/cached.lua).
set -euo pipefail

ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-5}"
WARM="${WARM:-3}"
export CACHED_IDS="${CACHED_IDS:-100}"
HERE="$(cd "$(dirname "$0")" && pwd)"
SHARED="${SHARED:-$HERE/../../../../shared}"
[ -f "$SHARED/bench/cached.lua" ] || SHARED=/work/shared
LUA="$SHARED/bench/cached.lua"
TICKS="$(getconf CLK_TCK)"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

REDIS_PORT="$(free_port)"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
  >/dev/null 2>&1 &
REDIS_PID=$!
SERVER_PID=""
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
  kill "$REDIS_PID" 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" PING >/dev/null 2>&1 && break; sleep 0.1; done
rcli() { redis-cli -p "$REDIS_PORT" "$@"; }
per_call() { rcli INFO commandstats | tr -d '\r' | awk -F'[:,=]' -v c="cmdstat_$1" '$1 == c { for (i = 2; i < NF; i++) if ($i == "usec_per_call") print $(i + 1) }'; }

RESULTS="$(mktemp)"
printf '%-12s %5s %10s %14s %13s %9s %10s\n' impl round req/s server-us/req redis-us/req get-usec hget-usec
for round in $(seq "$ROUNDS"); do
  for spec in "$@"; do
    label="${spec%%=*}"
    bin="${spec#*=}"
    rcli FLUSHALL >/dev/null
    PORT="$(free_port)"
    PORT="$PORT" REDIS_URL="redis://127.0.0.1:$REDIS_PORT" "$bin" >/dev/null 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 100); do curl -fs "http://127.0.0.1:$PORT/cached/1" >/dev/null 2>&1 && break; sleep 0.1; done
    wrk -t1 -c64 -d"${WARM}s" -s "$LUA" "http://127.0.0.1:$PORT/cached/" >/dev/null 2>&1
    rcli CONFIG RESETSTAT >/dev/null
    s0="$(cpu_ticks "$SERVER_PID")"; r0="$(cpu_ticks "$REDIS_PID")"
    out="$(wrk -t1 -c64 -d"${DURATION}s" -s "$LUA" "http://127.0.0.1:$PORT/cached/")"
    s1="$(cpu_ticks "$SERVER_PID")"; r1="$(cpu_ticks "$REDIS_PID")"
    requests="$(echo "$out" | awk '/requests in/ {print $1}')"
    rps="$(echo "$out" | awk '/Requests\/sec/ {print $2}')"
    get="$(per_call get)"; hget="$(per_call hget)"
    kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""
    line="$(awk -v l="$label" -v r="$round" -v rps="$rps" -v n="$requests" -v s="$((s1 - s0))" \
      -v rd="$((r1 - r0))" -v t="$TICKS" -v g="${get:--}" -v h="${hget:--}" \
      'BEGIN { printf "%-12s %5s %10.0f %14.2f %13.2f %9s %10s\n", l, r, rps, s * 1e6 / t / n, rd * 1e6 / t / n, g, h }')"
    echo "$line"
    echo "$line" >>"$RESULTS"
  done
done
echo "median per impl (req/s, server us/req, redis us/req):"
for spec in "$@"; do
  label="${spec%%=*}"
  for col in 3 4 5; do
    awk -v l="$label" -v c="$col" '$1 == l { print $c }' "$RESULTS" | sort -g |
      awk '{ v[NR] = $1 } END { printf "%s ", v[int((NR + 1) / 2)] }'
  done | awk -v l="$label" '{ printf "%-12s req/s %s  server %s us/req  redis %s us/req\n", l, $1, $2, $3 }'
done
rm -f "$RESULTS"
