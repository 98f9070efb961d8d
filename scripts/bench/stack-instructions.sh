#!/usr/bin/env bash
# Instructions per request of the contract's /hello stack under callgrind
# (examples/bench-app/benches/stack_instructions.rs): bare axum, the Rust peer's stack,
# tower-scale's, tower-scale's without one layer at a time, and the rate limiters alone.
# Every store is in memory: these are the layers' own costs, without Redis round trips.
#
#   scripts/bench/stack-instructions.sh                       # every variant
#   N=200 scripts/bench/stack-instructions.sh bare_axum tower_scale
#
# Callgrind counts inside the bench's request loop only (`measured`), divided by N.
# Environment: N (5000). Needs valgrind and python3.
set -euo pipefail
. "$(dirname "$0")/../lib/common.sh"
[ $# -gt 0 ] || set -- bare_axum peer tower_scale tower_scale_without_shutdown \
  tower_scale_without_ratelimit tower_scale_without_session tower_scale_without_compression \
  tower_scale_without_breaker tower_scale_shutdown_through_router_layer tower_scale_route_layer \
  tower_scale_stack ratelimit_only ratelimit_only_no_headers tower_governor_only
N="${N:-5000}" COLLECT=measured instructions_per_request example-bench-app stack_instructions "$@"
