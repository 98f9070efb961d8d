#!/usr/bin/env bash
# Instructions per request of the Redis-backed rate limiters under callgrind
# (crates/ratelimit/benches/redis_instructions.rs), client side only: the redis-server this
# script starts runs outside callgrind and is flushed before each variant.
#
#   scripts/bench/ratelimit-redis-instructions.sh             # every variant
#   N=200 scripts/bench/ratelimit-redis-instructions.sh bare_axum limited_tower_scale
#
# Variants: bare_axum; /limited (keyed by x-api-key, 100/s burst 100) with limited_tower_scale
# (RedisStore, route layer), limited_tower_scale_handler_layer (around the handler) and
# limited_tower_rate_limit_redis (the Rust peer's); /hello (peer IP, a quota never reached)
# with hello_tower_scale_hybrid (HybridStore), hello_tower_scale_redis (RedisStore) and
# hello_tower_governor (in memory, the Rust peer's).
# Callgrind counts inside the bench's request loop only (`measured`), divided by N.
# Environment: N (5000). Needs valgrind, python3, redis-server and redis-cli.
set -euo pipefail
. "$(dirname "$0")/../lib/common.sh"
[ $# -gt 0 ] || set -- bare_axum limited_tower_scale limited_tower_scale_handler_layer \
  limited_tower_rate_limit_redis hello_tower_scale_hybrid hello_tower_scale_redis hello_tower_governor
trap stop_redis EXIT
start_redis
export RL_REDIS_URL="$REDIS_URL"
N="${N:-5000}" VARIANT_VAR=RL_VARIANT N_VAR=RL_N COLLECT=measured BEFORE_EACH=flush_redis \
  instructions_per_request tower-scale-ratelimit redis_instructions "$@"
