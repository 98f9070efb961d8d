#!/bin/sh
# Instructions per request under callgrind (deterministic, unlike wall time on a shared VM):
# each router of benches/memory_instructions.rs serves N = 20000 requests; callgrind counts
# only inside the function sending them (--toggle-collect), and the count / N is one request.
# Run from the workspace root:
#   crates/ratelimit/benches/instructions.sh
set -eu
N=${RL_N:-20000}
bin=${RL_BIN:-$(cargo bench -p tower-scale-ratelimit --bench memory_instructions --no-run 2>&1 \
    | sed -n 's/.*Executable .*(\(.*\))/\1/p' | tail -n 1)}
ir() {
    RL_VARIANT=$1 RL_N=$2 valgrind --tool=callgrind --callgrind-out-file=/dev/null \
        --toggle-collect='*memory_instructions::measured*' "$bin" 2>&1 \
        | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
for v in ${RL_VARIANTS:-bare_axum tower_scale_ratelimit tower_scale_ratelimit_no_headers \
    tower_governor tower_governor_with_headers}; do
    echo "$v $(( $(ir "$v" "$N") / N ))"
done
