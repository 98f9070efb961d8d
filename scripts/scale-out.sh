#!/usr/bin/env bash
# The scale-out setup for a human to try: one redis-server, INSTANCES (3) processes of the
# quick-start example sharing it, and nginx in front of them with the repository's config
# (examples/scale-out/nginx.conf.template: round robin, the answering instance in X-Upstream).
# Everything listens on 127.0.0.1 only and lives in a temporary directory; nothing under
# /etc/nginx is read and port 80 is never used. Ctrl-C stops everything.
#
#   scripts/scale-out.sh                   # nginx on 127.0.0.1:8080
#   LISTEN=9000 INSTANCES=4 scripts/scale-out.sh
#
# Environment: LISTEN (nginx's port, 8080), INSTANCES (3), FIRST_PORT (the instances listen on
# FIRST_PORT, FIRST_PORT+1, ...; 3001), REDIS_PORT (6391; never 6379), PRE_STOP_DELAY (1s),
# PROFILE (dev, or release), KEEP=1 to keep the directory with the logs.
# Press Enter for a rolling restart of every instance (SIGTERM, wait for the exit, start again,
# wait for /readyz), e.g. while a load generator runs against the URL.
# Installs nginx, redis-server and curl from Debian's packages when missing.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
LISTEN="${LISTEN:-8080}"
INSTANCES="${INSTANCES:-3}"
FIRST_PORT="${FIRST_PORT:-3001}"
REDIS_PORT="${REDIS_PORT:-6391}"
PROFILE="${PROFILE:-dev}"
export PRE_STOP_DELAY="${PRE_STOP_DELAY:-1s}"

[ "$REDIS_PORT" != 6379 ] || die "REDIS_PORT=6379 is the system Redis's port: pick another one"

[ -x /usr/sbin/nginx ] || install_missing nginx
install_missing redis-server redis-cli:redis-tools curl
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"

# A port is taken when something accepts a connection on it.
taken() { (: <"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
PORTS=()
for i in $(seq 0 $((INSTANCES - 1))); do PORTS+=($((FIRST_PORT + i))); done
for port in "$LISTEN" "$REDIS_PORT" "${PORTS[@]}"; do
  ! taken "$port" || die "port $port on 127.0.0.1 is in use: set LISTEN, REDIS_PORT or FIRST_PORT"
done

echo "building example-quickstart (cargo build --profile $PROFILE)" >&2
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
(cd "$ROOT" && cargo build --quiet --profile "$PROFILE" -p example-quickstart)
BIN="$TARGET/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")/example-quickstart"

WORK="$(mktemp -d -t tower-scale-scale-out-XXXXXX)"
# nginx's worker drops root privileges (to nobody) and must reach its temp files here.
chmod 755 "$WORK"
REDIS_PID=""
NGINX_PID=""
declare -A PIDS=()
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
  trap - EXIT INT TERM
  echo >&2
  echo "stopping nginx, the instances and redis" >&2
  if [ -n "$NGINX_PID" ]; then kill -TERM "$NGINX_PID" 2>/dev/null || true; fi
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}" $NGINX_PID; do wait "$pid" 2>/dev/null || true; done
  if [ -n "$REDIS_PID" ]; then kill -TERM "$REDIS_PID" 2>/dev/null || true; wait "$REDIS_PID" 2>/dev/null || true; fi
  if [ -n "${KEEP:-}" ]; then echo "logs kept in $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK" \
  --daemonize no --loglevel warning >"$WORK/redis.log" 2>&1 &
REDIS_PID=$!
for _ in $(seq 200); do
  [ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ] && break
  kill -0 "$REDIS_PID" 2>/dev/null || { cat "$WORK/redis.log" >&2; exit 1; }
  sleep 0.05
done

start_instance() { # port
  REDIS_URL="redis://127.0.0.1:$REDIS_PORT" HOST=127.0.0.1 PORT="$1" NO_COLOR=1 \
    "$BIN" >>"$WORK/quickstart-$1.log" 2>&1 &
  PIDS[$1]=$!
  for _ in $(seq 600); do
    curl -fsS -m 1 -o /dev/null "http://127.0.0.1:$1/readyz" 2>/dev/null && return 0
    kill -0 "${PIDS[$1]}" 2>/dev/null || { tail -5 "$WORK/quickstart-$1.log" >&2; return 1; }
    sleep 0.05
  done
  echo "the instance on $1 was not ready within 30 s" >&2
  return 1
}
for port in "${PORTS[@]}"; do start_instance "$port"; done

UPSTREAMS=""
for port in "${PORTS[@]}"; do UPSTREAMS+="    server 127.0.0.1:$port max_fails=0;"$'\n'; done
conf="$(<"$ROOT/examples/scale-out/nginx.conf.template")"
conf="${conf//@DIR@/$WORK}"
conf="${conf//@LISTEN@/$LISTEN}"
conf="${conf//@UPSTREAMS@/${UPSTREAMS%$'\n'}}"
printf '%s\n' "$conf" >"$WORK/nginx.conf"
"$NGINX" -p "$WORK" -c "$WORK/nginx.conf" -e "$WORK/error.log" -g 'daemon off;' \
  >"$WORK/nginx.out" 2>&1 &
NGINX_PID=$!
for _ in $(seq 200); do
  taken "$LISTEN" && break
  kill -0 "$NGINX_PID" 2>/dev/null || { cat "$WORK/nginx.out" >&2; exit 1; }
  sleep 0.05
done

URL="http://127.0.0.1:$LISTEN"
cat <<EOF

nginx: $URL  ->  ${PORTS[*]/#/127.0.0.1:}  (redis 127.0.0.1:$REDIS_PORT, logs in $WORK)

  curl -si $URL/hello | grep -i x-upstream              # a different instance each time
  curl -si -c jar -X POST '$URL/login?user=alice'        # a session, then on any instance:
  curl -si -b jar $URL/counter                           # 1, 2, 3, ... from every instance
  for i in 1 2 3 4; do curl -s -o /dev/null -w '%{http_code} ' -H 'x-api-key: k' $URL/limited; done
                                                         # 200 200 200 429: one quota for all
  curl -si $URL/slow/7 | grep -iE 'x-upstream|cache-status'   # miss once, then hits everywhere
  for i in \$(seq 15); do curl -s -o /dev/null -w '%{http_code} ' '$URL/downstream?fail=1'; done
                                                         # 500 x 12, then 503: every breaker open

Enter: rolling restart of every instance.   Ctrl-C: stop everything.
EOF

while read -r _; do
  for port in "${PORTS[@]}"; do
    pid="${PIDS[$port]}"
    echo "restarting 127.0.0.1:$port (pid $pid): SIGTERM" >&2
    kill -TERM "$pid"
    code=0
    wait "$pid" || code=$?
    echo "  exited with $code; starting again" >&2
    start_instance "$port"
    echo "  ready (pid ${PIDS[$port]})" >&2
  done
  echo "rolling restart done" >&2
done
# stdin closed (e.g. not a terminal): keep serving until Ctrl-C or SIGTERM.
while kill -0 "$NGINX_PID" 2>/dev/null; do sleep 1; done
echo "nginx stopped: $(tail -3 "$WORK/error.log")" >&2
exit 1
