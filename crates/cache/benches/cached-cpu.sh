#!/usr/bin/env bash
# CPU time per `GET /cached/{id}` hit of a server and of Redis under wrk, for servers of the
# shared bench contract (shared/bench/SCENARIOS.md): scripts/cpu-per-request.sh's `cached`
# scenario, with this bench's defaults (100 ids, a 3 s warm-up that fills the cache). Usage:
#
#   crates/cache/benches/cached-cpu.sh <label>=<server binary> [<label>=<binary> ...]
#
# e.g. tower-scale=target/release/example-bench-app
#      rust-tower=/work/targets/rust-tower-peer/release/rust-tower-peer
#
# Environment: ROUNDS (3), DURATION (5), WARM (3), CACHED_IDS (100), SHARED.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
export CACHED_IDS="${CACHED_IDS:-100}" WARM="${WARM:-3}"
exec "$HERE/../../../scripts/cpu-per-request.sh" cached "$@"
