#!/usr/bin/env bash
# Instructions per `GET /cached/{id}` hit under callgrind (crates/cache/benches/hit_ir.rs):
# the cache layer, the typed API and hand-written cache-aside handlers, over 1,000 ids warmed
# first, against a real redis-server the bench starts (not counted: its own process).
#
#   scripts/bench/cache-instructions.sh                       # every variant
#   N=200 scripts/bench/cache-instructions.sh raw_get cache_hit
#
# Variants: redis_rs_get (the Rust peer's handler on a bare redis-rs connection), raw_get (the
# same through RedisBackend), fetch_bytes (that handler on Cache::get_or_fetch_bytes),
# cache_hit (ResponseCacheLayer as a route layer), cache_hit_handler_layer (around the handler).
# Each variant runs twice under callgrind, with no request and with N; the difference / N is
# one request. Environment: N (5000). Needs valgrind, python3 and redis-server.
set -euo pipefail
. "$(dirname "$0")/../lib/common.sh"
need redis-server
[ $# -gt 0 ] || set -- redis_rs_get raw_get fetch_bytes cache_hit cache_hit_handler_layer
N="${N:-5000}" instructions_per_request tower-scale-cache hit_ir "$@"
