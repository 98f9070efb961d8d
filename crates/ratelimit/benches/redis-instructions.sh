#!/bin/sh
# Instructions per request under callgrind of benches/redis_instructions.rs: each variant serves
# N = 5000 requests against one redis-server started here (outside callgrind, flushed before
# each run); callgrind counts only inside the function sending them (--toggle-collect), and
# the count / N is one request. Run from the workspace root:
#   crates/ratelimit/benches/redis-instructions.sh
set -eu
N=${RL_N:-5000}
bin=${RL_BIN:-$(cargo bench -p tower-scale-ratelimit --bench redis_instructions --no-run 2>&1 \
    | sed -n 's/.*Executable .*(\(.*\))/\1/p' | tail -n 1)}
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
dir=$(mktemp -d)
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" \
    --daemonize yes --pidfile "$dir/redis.pid" >/dev/null
trap 'kill "$(cat "$dir/redis.pid")"; rm -rf "$dir"' EXIT
until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.1; done
ir() {
    redis-cli -p "$port" flushall >/dev/null
    RL_REDIS_URL="redis://127.0.0.1:$port" RL_VARIANT=$1 RL_N=$2 \
        valgrind --tool=callgrind --callgrind-out-file=/dev/null \
        --toggle-collect='*redis_instructions::measured*' "$bin" 2>&1 \
        | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
for v in ${RL_VARIANTS:-bare_axum limited_tower_scale limited_tower_rate_limit_redis \
    hello_tower_scale_hybrid hello_tower_scale_redis hello_tower_governor}; do
    echo "$v $(( $(ir "$v" "$N") / N ))"
done
