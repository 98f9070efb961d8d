#!/bin/sh
# Instructions per request of the contract's /hello stack (benches/stack_instructions.rs):
# bare axum, the Rust peer's stack, tower-scale's, and tower-scale's without one layer at a time.
# From the workspace root:
#   examples/bench-app/benches/stack_instructions.sh
export COLLECT=measured
exec "$(dirname "$0")/../../../scripts/instructions-per-request.sh" example-bench-app stack_instructions \
    bare_axum peer tower_scale tower_scale_without_shutdown tower_scale_without_ratelimit \
    tower_scale_without_session tower_scale_without_compression tower_scale_without_breaker \
    tower_scale_shutdown_through_router_layer tower_scale_route_layer tower_scale_stack \
    ratelimit_only ratelimit_only_no_headers tower_governor_only
