#!/usr/bin/env bash
# Instructions per call that redis-server spends on a GCRA script, counted by callgrind: the
# server runs under valgrind, redis-benchmark sends N calls (1 connection, 16 pipelined, over
# KEYS random keys) after 200 unmeasured ones, and the figure is the difference with the same
# run answering PING, divided by N. Deterministic to within a few hundred instructions.
#
#   scripts/bench/ratelimit-script-instructions.sh
#   N=200 PREV= scripts/bench/ratelimit-script-instructions.sh     # cheap, without the old script
#
# Scripts measured: RedisStore's current one (from crates/ratelimit/src), the one of git
# revision PREV (default 401bb21, the script before its rewrite for Redis's cost; empty: left
# out), and tower-rate-limit-redis 1.0.2's (the Rust peer's, from the cargo registry: `cargo
# fetch` first), each with one quota, every call admitted. Environment: N (20000), KEYS (10),
# PREV. Needs valgrind, redis-server, redis-cli, redis-benchmark (Debian: valgrind,
# redis-server, redis-tools) and python3.
set -euo pipefail
. "$(dirname "$0")/../lib/common.sh"
need valgrind redis-server redis-cli:redis-tools redis-benchmark:redis-tools python3
N="${N:-20000}"
NKEYS="${KEYS:-10}"
PREV="${PREV-401bb21}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

extract() { python3 -c '
import sys
s = sys.stdin.read()
mark = "const GCRA_CODE: &str = r\""
i = s.index(mark) + len(mark)
print(s[i:s.index("\";", i)])'; }
# The script in a .lua file of its own when there is one, else inside store.rs.
ours_lua="$(find "$ROOT/crates/ratelimit/src" -name 'gcra*.lua' | head -n 1)"
if [ -n "$ours_lua" ]; then
  cp "$ours_lua" "$WORK/ours.lua"
else
  extract <"$ROOT/crates/ratelimit/src/store.rs" >"$WORK/ours.lua"
fi
[ -z "$PREV" ] || git -C "$ROOT" show "$PREV:crates/ratelimit/src/store.rs" | extract >"$WORK/previous.lua"
PEER="$(find "${CARGO_HOME:-$HOME/.cargo}/registry/src" -path '*tower-rate-limit-redis-1.0.2/scripts/rate_limit.lua' | head -1)"
[ -n "$PEER" ] || die "tower-rate-limit-redis 1.0.2 is not in the cargo registry: run cargo fetch first"

# run <script file or -> <redis-benchmark command...>: total instructions of the server
run() {
  local file=$1; shift
  local port; port="$(free_port)"
  local out="$WORK/cg.$port"
  valgrind --tool=callgrind --callgrind-out-file="$out" redis-server --port "$port" \
    --bind 127.0.0.1 --save '' --appendonly no >/dev/null 2>&1 &
  local pid=$!
  for _ in $(seq 200); do redis-cli -p "$port" PING >/dev/null 2>&1 && break; sleep 0.1; done
  if [ "$file" != - ]; then
    local sha; sha="$(redis-cli -p "$port" SCRIPT LOAD "$(cat "$file")")"
    set -- EVALSHA "$sha" "$@"
  fi
  redis-benchmark -p "$port" -n 200 -c 1 -P 16 -r "$NKEYS" -q "$@" >/dev/null 2>&1
  redis-benchmark -p "$port" -n "$N" -c 1 -P 16 -r "$NKEYS" -q "$@" >/dev/null 2>&1
  redis-cli -p "$port" SHUTDOWN NOSAVE >/dev/null 2>&1 || true
  wait "$pid" 2>/dev/null || true
  awk '/^(summary|totals):/ { print $2; exit }' "$out"
}

base="$(run - PING)"
per_call() { echo $(( ($(run "$@") - base) / N )); }
key='ts:ratelimit:{bench:__rand_int__}:t0'
# Under the rate (1 ms per request over 10 keys: at each call the TAT has passed, or is
# barely ahead) and at the rate (the TAT always ahead: 100 ms per request, a window far
# larger than the run); "sub-ms" rows: an increment that is not a whole number of ms (the
# key's value holds the TAT's remainder: one GET more).
printf '%-40s %12s %12s\n' script under-rate at-rate
printf '%-40s %12s %12s\n' "RedisStore (this tree)" \
  "$(per_call "$WORK/ours.lua" 1 "$key" 1000 1000000)" \
  "$(per_call "$WORK/ours.lua" 1 "$key" 100000 100000000000)"
printf '%-40s %12s %12s\n' "RedisStore (this tree), sub-ms" \
  "$(per_call "$WORK/ours.lua" 1 "$key" 999 1000000)" \
  "$(per_call "$WORK/ours.lua" 1 "$key" 100001 100000000000)"
[ -z "$PREV" ] || printf '%-40s %12s %12s\n' "RedisStore ($PREV)" \
  "$(per_call "$WORK/previous.lua" 1 "$key" 1 1 1000000)" \
  "$(per_call "$WORK/previous.lua" 1 "$key" 1 100000 1000000)"
printf '%-40s %12s %12s\n' "tower-rate-limit-redis 1.0.2" \
  "$(per_call "$PEER" 1 "$key" 1000000 0.001)" \
  "$(per_call "$PEER" 1 "$key" 1000000 100)"
