#!/usr/bin/env bash
# The HTTP caching conformance suite behind cache-tests.fyi, run against ResponseCacheLayer:
#   scripts/cache-conformance.sh              # both stores
#   MODES=memory scripts/cache-conformance.sh # one
#
# Builds examples/cache-proxy (a forwarding reverse proxy wrapped in the layer, its
# "standards" preset with `cache_authorized` and `public`), copies the suite from
# $SHARED_DIR/conformance/cache-tests to a scratch folder under the target directory,
# installs its dependencies with npm, starts the suite's origin server, then for each store
# (memory; redis: a redis-server it starts on a free loopback port) starts the proxy and runs
# the suite's CLI through it. Prints the score table next to the published caches
# ($SHARED_DIR/conformance/score.mjs) and exits non-zero when a required test fails that is
# not one of the harness artifacts listed in scripts/lib/cache-conformance-allowed.txt, or
# when a store's figures miss the targets (MIN_PASS, MAX_DEP_FAIL).
#
# Environment: SHARED_DIR (../shared), MODES (memory redis), MIN_PASS (215), MAX_DEP_FAIL (30),
# OUT (target/cache-conformance). Needs node >= 20 and npm (installed from Debian's packages when
# missing), redis-server, python3.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
shared_dir() { # the conformance folder, not bench/
  SHARED_DIR="${SHARED_DIR:-$ROOT/../shared}"
  [ -d "$SHARED_DIR/conformance/cache-tests" ] ||
    die "no conformance/cache-tests in SHARED_DIR=$SHARED_DIR: set SHARED_DIR to the shared folder"
  SHARED_DIR="$(cd "$SHARED_DIR" && pwd)"
}
shared_dir
install_missing node:nodejs npm:npm
need redis-server python3
MODES="${MODES:-memory redis}"
MIN_PASS="${MIN_PASS:-215}"
MAX_DEP_FAIL="${MAX_DEP_FAIL:-30}"
target_dir="${CARGO_TARGET_DIR:-$ROOT/target}"
OUT="${OUT:-$target_dir/cache-conformance}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

echo "==> building examples/cache-proxy" >&2
(cd "$ROOT" && cargo build -p example-cache-proxy --locked --quiet)
proxy="$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps --locked |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug/example-cache-proxy"
[ -x "$proxy" ] || die "no proxy binary at $proxy"

suite="$OUT/cache-tests"
if [ ! -d "$suite/node_modules/undici" ]; then
  echo "==> copying the suite to $suite and installing its dependencies (npm)" >&2
  rm -rf "$suite"
  cp -r "$SHARED_DIR/conformance/cache-tests" "$suite"
  (cd "$suite" && npm install --omit=dev --no-audit --no-fund --loglevel=error >/dev/null)
fi

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

wait_port() { # port
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  die "nothing listens on 127.0.0.1:$1"
}

origin_port="$(free_port)"
(cd "$suite" && npm_config_port="$origin_port" npm_config_protocol=http \
  npm_config_pidfile="$OUT/origin.pid" exec node test-engine/server/server.mjs) >"$OUT/origin.log" 2>&1 &
pids+=($!)
wait_port "$origin_port"

results=()
for mode in $MODES; do
  redis=()
  if [ "$mode" = redis ]; then
    redis_port="$(free_port)"
    redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no >"$OUT/redis.log" 2>&1 &
    pids+=($!)
    wait_port "$redis_port"
    redis=(--redis "redis://127.0.0.1:$redis_port")
  elif [ "$mode" != memory ]; then
    die "unknown mode $mode (memory, redis)"
  fi
  proxy_port="$(free_port)"
  PORT="$proxy_port" "$proxy" --origin "127.0.0.1:$origin_port" "${redis[@]}" \
    >"$OUT/proxy-$mode.log" 2>&1 &
  proxy_pid=$!
  pids+=("$proxy_pid")
  wait_port "$proxy_port"
  echo "==> the suite through the proxy, $mode store" >&2
  (cd "$suite" && npm_config_base="http://127.0.0.1:$proxy_port" npm_package_config_id='' \
    node --no-warnings test-engine/cli.mjs) >"$OUT/results-$mode.json" 2>"$OUT/cli-$mode.log"
  kill "$proxy_pid"
  results+=("$OUT/results-$mode.json")
done

node "$SHARED_DIR/conformance/score.mjs" "$suite" "${results[@]}" | tee "$OUT/score.md"
node "$ROOT/scripts/lib/cache-conformance-check.mjs" "$suite" "$ROOT/scripts/lib/cache-conformance-allowed.txt" \
  "$MIN_PASS" "$MAX_DEP_FAIL" "${results[@]}"
