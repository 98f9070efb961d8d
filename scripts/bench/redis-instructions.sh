#!/usr/bin/env bash
# Instructions per GET under callgrind (crates/redis/benches/instructions.rs), client side
# only: a GET of a 100-byte value through RedisBackend::query with its defaults, against a raw
# redis-rs MultiplexedConnection (what the Rust peer uses) and a raw ConnectionManager, one
# after another on a current-thread runtime. The redis-server this script starts runs outside
# callgrind.
#
#   scripts/bench/redis-instructions.sh                       # every variant
#   N=200 scripts/bench/redis-instructions.sh backend raw_multiplexed
#
# Variants: backend, raw_multiplexed, raw_connection_manager. Callgrind counts inside the
# bench's request loop only (`measured`), divided by N.
# Environment: N (5000). Needs valgrind, python3, redis-server and redis-cli.
set -euo pipefail
. "$(dirname "$0")/../lib/common.sh"
[ $# -gt 0 ] || set -- backend raw_multiplexed raw_connection_manager
trap stop_redis EXIT
start_redis
export REDIS_IR_URL="$REDIS_URL"
N="${N:-5000}" VARIANT_VAR=REDIS_IR_VARIANT N_VAR=REDIS_IR_N COLLECT=measured BEFORE_EACH=flush_redis \
  instructions_per_request tower-scale-redis instructions "$@"
