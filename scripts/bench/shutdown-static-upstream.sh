#!/usr/bin/env bash
# Rolling restarts behind a plain load balancer, counted: INSTANCES (3) instances of an
# implementation of shared/bench/SCENARIOS.md behind nginx with a static upstream (`keepalive 64`,
# `proxy_http_version 1.1`, `proxy_next_upstream error timeout`, no health checks: `max_fails=0`,
# never reloaded), wrk POSTing /login at full load, and RESTARTS (6) rolling restarts, one
# instance at a time: SIGTERM, wait for the exit, start again on the same port, wait until it
# answers, PAUSE seconds. nginx never re-sends a POST it has sent, so every request an instance
# drops is a failure here.
#
#   scripts/bench/shutdown-static-upstream.sh        # tower-scale's bench app, pre-stop delay 0 s and 5 s
#   IMPLS="tower-scale rust-tower node-express" scripts/bench/shutdown-static-upstream.sh
#   CHECK=1 PROFILE=dev scripts/bench/shutdown-static-upstream.sh   # scripts/test.sh: exit 1 on a failure
#
# Prints one line per run: `<impl> pre_stop_delay=<s> requests=<n> non2xx=<n> socket_errors=<n>
# upstream_resets=<n> bad_exits=<n> restarts=<n> failures_per_restart=<x>`, where
# upstream_resets counts nginx error-log lines of an upstream connection reset, closed early or
# broken while nginx used it, and bad_exits the restarted processes that did not exit 0.
#
# Environment:
#   IMPLS            tower-scale (the bench app, default), rust-tower, node-express (the peers,
#                    built and started as scripts/bench/stack-side-by-side.sh does)
#   PRE_STOP_DELAYS  the bench app's pre-stop delays to run, in seconds ("0 5"; 5 s is
#                    ShutdownConfig's default); the peers have none and run once
#   RESTARTS (6), INSTANCES (3), CONNECTIONS (64), THREADS (2), PAUSE (1)
#   TIMEOUT          wrk's timeout in seconds (10): a response slower than that counts as a
#                    socket error (timeout), so a loaded machine does not turn slow into failed
#   PROFILE          release (default) or dev: how the bench app is built
#   BENCH_APP        a bench app binary to use instead of building one
#   CHECK=1          exit 1 unless every run had 0 non-2xx, 0 socket errors, 0 upstream resets and
#                    0 bad exits
#   SHARED_DIR, RUST_PEER_TARGET_DIR, NODE_PEER_DEPS_DIR: as in stack-side-by-side.sh
#   KEEP=1           keep the temporary folder with the logs
# Installs nginx, wrk, curl, redis-server, redis-tools and python3 (and node, npm for the Node
# peer) from Debian's packages when missing.
set -euo pipefail
. "$(dirname "$0")/../lib/common.sh"
IMPLS="${IMPLS:-tower-scale}"
PRE_STOP_DELAYS="${PRE_STOP_DELAYS:-0 5}"
RESTARTS="${RESTARTS:-6}"
INSTANCES="${INSTANCES:-3}"
CONNECTIONS="${CONNECTIONS:-64}"
THREADS="${THREADS:-2}"
PAUSE="${PAUSE:-1}"
TIMEOUT="${TIMEOUT:-10}"
PROFILE="${PROFILE:-release}"
RUST_PEER_TARGET_DIR="${RUST_PEER_TARGET_DIR:-$ROOT/target/rust-tower-peer}"
NODE_PEER_DEPS_DIR="${NODE_PEER_DEPS_DIR:-$ROOT/target/node-express-peer}"
for n in RESTARTS INSTANCES CONNECTIONS THREADS TIMEOUT; do
  case "${!n}" in '' | *[!0-9]* | 0) die "$n must be a positive integer" ;; esac
done
case "$PROFILE" in release | dev) ;; *) die "PROFILE must be release or dev" ;; esac

[ -x /usr/sbin/nginx ] || install_missing nginx
install_missing wrk curl redis-server redis-cli:redis-tools python3
case " $IMPLS " in *" node-express "*) install_missing node:nodejs npm ;; esac
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"

# --- build everything first ---------------------------------------------------------------------
for impl in $IMPLS; do
  case "$impl" in
    tower-scale)
      if [ -z "${BENCH_APP:-}" ]; then
        echo "building tower-scale's bench app ($PROFILE)" >&2
        (cd "$ROOT" && cargo build --quiet --locked --profile "$PROFILE" -p example-bench-app)
        BENCH_APP="${CARGO_TARGET_DIR:-$ROOT/target}/$([ "$PROFILE" = dev ] && echo debug || echo release)/example-bench-app"
      fi
      [ -x "$BENCH_APP" ] || die "no bench app at $BENCH_APP" ;;
    rust-tower) shared_dir; build_rust_peer ;;
    node-express) shared_dir; install_node_peer ;;
    *) die "unknown implementation '$impl'" ;;
  esac
done

WORK="$(mktemp -d -t tower-scale-static-upstream-XXXXXX)"
# nginx's worker drops root privileges (to nobody) and must reach its temp files here.
chmod 755 "$WORK"
declare -A PIDS=()
WRK_PID=""
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
  [ -z "$WRK_PID" ] || kill -KILL "$WRK_PID" 2>/dev/null || true
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  if [ -f "$WORK/nginx.pid" ]; then kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true; fi
  stop_redis
  if [ -n "${KEEP:-}" ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
start_redis
# The processes under test run ahead of other work on the machine (when allowed: root), so a
# busy machine does not turn into Redis timeouts, answered 503 by /login, counted as failures.
prioritise() { renice -n -5 -p "$@" >/dev/null 2>&1 || true; }
prioritise "$REDIS_PID"

PORTS=()
for _ in $(seq "$INSTANCES"); do PORTS+=("$(free_port)"); done
NGINX_PORT="$(free_port)"
{
  echo "worker_processes 2;"
  echo "pid $WORK/nginx.pid;"
  echo "error_log $WORK/error.log warn;"
  echo "events { worker_connections 4096; }"
  echo "http {"
  # Only the answers that are not 2xx: when, which instance, what status.
  echo '  map $status $failed { ~^2 0; default 1; }'
  echo '  log_format failed "$msec $status $upstream_addr $upstream_status";'
  echo "  access_log $WORK/failed.log failed if=\$failed;"
  for d in client_body proxy fastcgi uwsgi scgi; do echo "  ${d}_temp_path $WORK/$d;"; done
  echo "  upstream app {"
  # No passive health checks either: every request may be sent to a stopped instance.
  for port in "${PORTS[@]}"; do echo "    server 127.0.0.1:$port max_fails=0;"; done
  echo "    keepalive 64;"
  # Idle pooled connections close before an instance's drain deadline (docs/shutdown.md).
  echo "    keepalive_timeout 5s;"
  echo "  }"
  echo "  server {"
  echo "    listen 127.0.0.1:$NGINX_PORT;"
  echo "    location / {"
  echo "      proxy_pass http://app;"
  echo "      proxy_http_version 1.1;"
  echo "      proxy_set_header Connection \"\";"
  echo "      proxy_next_upstream error timeout;"
  echo "    }"
  echo "  }"
  echo "}"
} >"$WORK/nginx.conf"
"$NGINX" -c "$WORK/nginx.conf" -p "$WORK" -e "$WORK/error.log"
# POSTs; at the end, the count of each status that is not 2xx ("status 502: 3").
cat >"$WORK/post.lua" <<'EOF'
wrk.method = "POST"
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) statuses = {} end
function response(status, headers, body)
  if status >= 300 then statuses[status] = (statuses[status] or 0) + 1 end
end
function done(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("statuses")) do total[k] = (total[k] or 0) + v end
  end
  for k, v in pairs(total) do io.write(string.format("status %d: %d\n", k, v)) end
end
EOF

# Runs in a background subshell and execs the server, so $! is the server's own pid.
exec_impl() { # impl port pre_stop_delay
  export PORT=$2 REDIS_URL
  case "$1" in
    tower-scale) BENCH_MODE=full BENCH_PRE_STOP_DELAY="$3" exec "$BENCH_APP" ;;
    rust-tower) exec "$RUST_PEER" ;;
    node-express) NODE_ENV=production NODE_PATH="$NODE_PEER_DEPS_DIR/node_modules" \
                    exec node "$SHARED_DIR/peers/node-express/server.js" ;;
  esac
}

start_instance() { # impl port pre_stop_delay
  exec_impl "$@" >>"$WORK/$1-$2.log" 2>&1 &
  PIDS[$2]=$!
  prioritise "${PIDS[$2]}"
  for _ in $(seq 600); do
    curl -fsS -m 1 -o /dev/null "http://127.0.0.1:$2/hello" 2>/dev/null && return 0
    kill -0 "${PIDS[$2]}" 2>/dev/null || die "$1 on port $2 died: $(tail -3 "$WORK/$1-$2.log")"
    sleep 0.1
  done
  die "$1 on port $2 did not answer"
}

failed=0
run() { # impl pre_stop_delay
  local impl=$1 delay=$2 port rc bad_exits=0 i
  : >"$WORK/error.log"
  : >"$WORK/failed.log"
  "$NGINX" -c "$WORK/nginx.conf" -p "$WORK" -e "$WORK/error.log" -s reopen
  flush_redis
  for port in "${PORTS[@]}"; do start_instance "$impl" "$port" "$delay"; done
  wrk -t"$THREADS" -c"$CONNECTIONS" -d1h --timeout "${TIMEOUT}s" -s "$WORK/post.lua" "http://127.0.0.1:$NGINX_PORT/login" \
    >"$WORK/wrk.txt" 2>&1 &
  WRK_PID=$!
  sleep "$PAUSE"
  for i in $(seq 0 $((RESTARTS - 1))); do
    port=${PORTS[$((i % INSTANCES))]}
    echo "$(date +%s.%N) SIGTERM $port" >>"$WORK/restarts-$impl-$delay.log"
    kill -TERM "${PIDS[$port]}"
    rc=0; wait "${PIDS[$port]}" || rc=$?
    [ "$rc" -eq 0 ] || { bad_exits=$((bad_exits + 1)); echo "$impl on $port exited with $rc" >&2; }
    echo "$(date +%s.%N) exited $port" >>"$WORK/restarts-$impl-$delay.log"
    start_instance "$impl" "$port" "$delay"
    echo "$(date +%s.%N) answering $port" >>"$WORK/restarts-$impl-$delay.log"
    sleep "$PAUSE"
  done
  kill -INT "$WRK_PID"  # wrk prints its totals on SIGINT
  wait "$WRK_PID" || true
  WRK_PID=""
  for port in "${PORTS[@]}"; do kill -TERM "${PIDS[$port]}" 2>/dev/null || true; done
  for port in "${PORTS[@]}"; do wait "${PIDS[$port]}" 2>/dev/null || true; done
  PIDS=()
  local requests non2xx errors resets
  requests=$(awk '/requests in/ {print $1}' "$WORK/wrk.txt")
  non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$WORK/wrk.txt")
  errors=$(awk '/Socket errors:/ {gsub(",", ""); print $4 + $6 + $8 + $10}' "$WORK/wrk.txt")
  # Sleep for nginx to have written its log; grep -c prints 0 (and fails) when nothing matches.
  sleep 0.2
  resets=$(grep -E 'upstream' "$WORK/error.log" | grep -cE 'reset by peer|prematurely closed|Broken pipe' || true)
  [ -n "$requests" ] || { cat "$WORK/wrk.txt" >&2; die "wrk printed no totals"; }
  cp "$WORK/wrk.txt" "$WORK/wrk-$impl-$delay.txt"
  cp "$WORK/error.log" "$WORK/error-$impl-$delay.log"
  cp "$WORK/failed.log" "$WORK/failed-$impl-$delay.log"
  grep -E '^status |Socket errors' "$WORK/wrk.txt" >&2 || true
  grep -E 'upstream' "$WORK/error.log" | grep -E 'reset by peer|prematurely closed|Broken pipe' | head -5 >&2 || true
  python3 -c "import sys; i,d,r,n,e,u,b,k=sys.argv[1:]; print(f'{i} pre_stop_delay={d} requests={r} non2xx={n} socket_errors={e} upstream_resets={u} bad_exits={b} restarts={k} failures_per_restart={(int(n)+int(e))/int(k):.1f}')" \
    "$impl" "$delay" "$requests" "${non2xx:-0}" "${errors:-0}" "$resets" "$bad_exits" "$RESTARTS"
  if [ "${non2xx:-0}" -ne 0 ] || [ "${errors:-0}" -ne 0 ] || [ "$resets" -ne 0 ] || [ "$bad_exits" -ne 0 ]; then
    failed=1
    # The evidence, in the log of a run that does not keep its folder (CI): wrk's totals and
    # latencies, when each restart happened, nginx's errors and each instance's last lines.
    {
      echo "--- $impl pre_stop_delay=$delay: wrk"; cat "$WORK/wrk.txt"
      echo "--- restarts (epoch seconds)"; cat "$WORK/restarts-$impl-$delay.log" 2>/dev/null
      echo "--- nginx error.log (last 20 lines)"; tail -20 "$WORK/error.log"
      for port in "${PORTS[@]}"; do
        echo "--- $impl on $port (last 10 lines)"; tail -10 "$WORK/$impl-$port.log" 2>/dev/null
      done
    } >&2
  fi
}

for impl in $IMPLS; do
  if [ "$impl" = tower-scale ]; then
    for delay in $PRE_STOP_DELAYS; do run "$impl" "$delay"; done
  else
    run "$impl" -
  fi
done
if [ -n "${CHECK:-}" ] && [ "$failed" -ne 0 ]; then
  echo "$SCRIPT: requests were lost during the rolling restarts (logs: KEEP=1)" >&2
  exit 1
fi
