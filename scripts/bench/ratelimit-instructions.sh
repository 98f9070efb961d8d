#!/usr/bin/env bash
# Instructions per request of the in-memory rate limiter under callgrind
# (crates/ratelimit/benches/memory_instructions.rs): one request through an axum router
# limited by peer IP, cycling over 1,000 client addresses, a quota never reached, against
# tower_governor on the same quota.
#
#   scripts/bench/ratelimit-instructions.sh                   # every variant
#   N=200 scripts/bench/ratelimit-instructions.sh bare_axum tower_governor
#
# Variants: bare_axum, tower_scale_ratelimit (IETF RateLimit fields on, the default),
# tower_scale_ratelimit_no_headers, tower_governor, tower_governor_with_headers.
# Callgrind counts inside the bench's request loop only (`measured`), divided by N.
# Environment: N (20000). Needs valgrind and python3.
set -euo pipefail
. "$(dirname "$0")/../lib/common.sh"
[ $# -gt 0 ] || set -- bare_axum tower_scale_ratelimit tower_scale_ratelimit_no_headers \
  tower_governor tower_governor_with_headers
N="${N:-20000}" VARIANT_VAR=RL_VARIANT N_VAR=RL_N COLLECT=measured \
  instructions_per_request tower-scale-ratelimit memory_instructions "$@"
