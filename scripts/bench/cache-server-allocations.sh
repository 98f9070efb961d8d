#!/usr/bin/env bash
# glibc allocations per `GET /cached/{id}` hit of running servers of the shared bench contract
# (SCENARIOS.md in the shared folder), counted with perf uprobes on malloc and realloc.
#
#   scripts/bench/cache-server-allocations.sh <label>=<server binary> [<label>=<binary> ...]
#   e.g. tower-scale=target/release/example-bench-app rust-tower=<the Rust peer's binary>
#
# Starts one redis-server on a free loopback port; per round and per server: FLUSHALL, start it
# (PORT, REDIS_URL), a WARM-second untimed wrk pass over CACHED_IDS ids (fills the cache, so
# the counted run is hits only), then `perf stat -e probe_libc:malloc,probe_libc:realloc -p
# <server>` around `wrk -t1 -c8 -d$DURATION`, divided by wrk's request count. Deterministic
# enough to compare builds (±0.1 per request: connection set-up and timers).
# Environment: ROUNDS (2), DURATION (3), WARM (2), CACHED_IDS (100), SHARED_DIR. Needs root,
# perf with the two probes (`perf probe -x /lib/x86_64-linux-gnu/libc.so.6 malloc`, the same
# for realloc), wrk, curl, python3, redis-server and redis-cli.
set -euo pipefail
. "$(dirname "$0")/../lib/common.sh"
[ $# -gt 0 ] || die "usage: $SCRIPT <label>=<server binary>..."
need perf:linux-perf wrk curl
shared_dir
ROUNDS="${ROUNDS:-2}" DURATION="${DURATION:-3}" WARM="${WARM:-2}"
export CACHED_IDS="${CACHED_IDS:-100}"
LUA="$SHARED_DIR/bench/cached.lua"
grep -q 'probe_libc:malloc' <<<"$(perf list 2>/dev/null)" ||
  die "no perf probe probe_libc:malloc: as root, perf probe -x /lib/x86_64-linux-gnu/libc.so.6 malloc (and realloc)"
SERVER_PID=""
cleanup() {
  [ -z "$SERVER_PID" ] || kill "$SERVER_PID" 2>/dev/null || true
  stop_redis
}
trap cleanup EXIT
start_redis
# Starts `$1` on a free port with an empty Redis, fills its cache; sets SERVER_PID and URL.
start_warm() {
  local port tries=0
  port="$(free_port)"
  flush_redis
  env PORT="$port" REDIS_URL="$REDIS_URL" "$1" >/dev/null 2>&1 &
  SERVER_PID=$!
  URL="http://127.0.0.1:$port/cached/"
  until curl -fs "http://127.0.0.1:$port/hello" >/dev/null 2>&1; do
    tries=$((tries + 1))
    [ "$tries" -lt 100 ] || die "$1 did not answer on port $port"
    sleep 0.1
  done
  wrk -t1 -c8 -d"${WARM}s" -s "$LUA" "$URL" >/dev/null 2>&1
}
printf '%-14s %5s %10s %12s %12s\n' impl round requests malloc/req realloc/req
for round in $(seq "$ROUNDS"); do
  for spec in "$@"; do
    label="${spec%%=*}"
    start_warm "${spec#*=}"
    stats="$(mktemp)"
    out="$(perf stat -x, -o "$stats" -e probe_libc:malloc,probe_libc:realloc -p "$SERVER_PID" -- \
      wrk -t1 -c8 -d"${DURATION}s" -s "$LUA" "$URL")"
    kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""
    n="$(echo "$out" | awk '/requests in/ {print $1}')"
    m="$(awk -F, '$3 == "probe_libc:malloc" {print $1}' "$stats")"
    r="$(awk -F, '$3 == "probe_libc:realloc" {print $1}' "$stats")"
    rm -f "$stats"
    awk -v l="$label" -v rd="$round" -v n="$n" -v m="$m" -v r="$r" \
      'BEGIN { printf "%-14s %5s %10d %12.2f %12.2f\n", l, rd, n, m / n, r / n }'
  done
done
