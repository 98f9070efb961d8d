#!/usr/bin/env bash
# Zero-downtime restarts, measured: two instances of examples/restart-demo behind a real nginx
# upstream (loopback only), wrk at full concurrency for DURATION seconds, and RESTARTS rolling
# restarts during the run: SIGTERM; nginx takes the instance out once it reports not ready
# (config reload, as a readiness-aware load balancer does); wait for the exit; start a new
# process on the same port; put it back.
# Runs the graceful server (tower-scale-shutdown) and the plain axum::serve one, and prints the
# failed requests of each: wrk's non-2xx responses plus socket errors.
#
#   scripts/bench/shutdown-restart-under-load.sh              # DURATION=30 RESTARTS=10 CONNECTIONS=64
#   DURATION=6 RESTARTS=2 scripts/bench/shutdown-restart-under-load.sh
#
# Environment: DURATION (30), RESTARTS (10), CONNECTIONS (64), MODES ("graceful plain"), KEEP=1
# to keep the temporary folder with the logs.
# Requests are POSTs, which nginx never re-sends to another upstream once sent, so a request cut
# by a dying process shows up as a failure instead of being retried away. Installs nginx, wrk,
# curl and python3 from Debian's packages when missing.
set -euo pipefail
. "$(dirname "$0")/../lib/common.sh"
DURATION="${DURATION:-30}"
RESTARTS="${RESTARTS:-10}"
CONNECTIONS="${CONNECTIONS:-64}"
MODES="${MODES:-graceful plain}"

[ -x /usr/sbin/nginx ] || install_missing nginx
install_missing wrk curl python3
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"

TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
(cd "$ROOT" && cargo build --release --quiet -p example-restart-demo)
BIN="$TARGET/release/example-restart-demo"

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  if [ -f "$WORK/nginx.pid" ]; then kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true; fi
  if [ -n "${KEEP:-}" ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

PA="$(free_port)"; PB="$(free_port)"; PN="$(free_port)"
# The load balancer: nginx, reloaded with an instance marked down when that instance reports
# not ready, as a readiness-aware load balancer (Kubernetes endpoints, a health-checking LB) does.
write_nginx_conf() { # down_a down_b (0/1)
  local a_flag="" b_flag=""
  [ "$1" = 1 ] && a_flag=" down"
  [ "$2" = 1 ] && b_flag=" down"
  cat >"$WORK/nginx.conf" <<EOF
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  # No client keep-alive: a reload then never races a client request on an idle connection.
  keepalive_timeout 0;
  client_body_temp_path $WORK/body;
  proxy_temp_path $WORK/proxy;
  fastcgi_temp_path $WORK/fastcgi;
  uwsgi_temp_path $WORK/uwsgi;
  scgi_temp_path $WORK/scgi;
  upstream app {
    server 127.0.0.1:$PA max_fails=0$a_flag;
    server 127.0.0.1:$PB max_fails=0$b_flag;
    keepalive 64;
  }
  server {
    listen 127.0.0.1:$PN;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_next_upstream error timeout;
      proxy_next_upstream_tries 2;
    }
  }
}
EOF
}
reload_nginx() { write_nginx_conf "$1" "$2"; "$NGINX" -c "$WORK/nginx.conf" -p "$WORK" -e "$WORK/error.log" -s reload; }
write_nginx_conf 0 0
"$NGINX" -c "$WORK/nginx.conf" -p "$WORK" -e "$WORK/error.log"
cat >"$WORK/post.lua" <<'EOF'
wrk.method = "POST"
wrk.body = "x"
EOF

LAST_PID=""
start_instance() { # port mode; sets LAST_PID (a child of this shell, so `wait` works)
  GRACEFUL=$([ "$2" = graceful ] && echo 1 || echo 0) PORT="$1" "$BIN" >>"$WORK/app.log" 2>&1 &
  LAST_PID=$!
  for _ in $(seq 200); do
    curl -fsS -m 1 -o /dev/null -X POST "http://127.0.0.1:$1/work" 2>/dev/null && return 0
    kill -0 "$LAST_PID" 2>/dev/null || { echo "instance on $1 died: $(tail -1 "$WORK/app.log")" >&2; return 1; }
    sleep 0.05
  done
  echo "instance on $1 did not answer" >&2
  return 1
}

for mode in $MODES; do
  start_instance "$PA" "$mode"; PID_A=$LAST_PID
  start_instance "$PB" "$mode"; PID_B=$LAST_PID
  PIDS=("$PID_A" "$PID_B")
  wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" -s "$WORK/post.lua" "http://127.0.0.1:$PN/work" \
    >"$WORK/wrk-$mode.txt" 2>&1 &
  WRK=$!
  interval=$(python3 -c "print(max(0.5, ($DURATION - 4) / $RESTARTS))")
  sleep 2
  for i in $(seq "$RESTARTS"); do
    if [ $((i % 2)) -eq 1 ]; then port=$PA; pid=$PID_A; else port=$PB; pid=$PID_B; fi
    down_a=$([ "$port" = "$PA" ] && echo 1 || echo 0); down_b=$((1 - down_a))
    kill -TERM "$pid"
    # The load balancer notices the readiness flip (the graceful server answers 503 on
    # /readyz during its pre-stop delay; the plain one is already gone) and takes it out.
    for _ in $(seq 20); do
      code=$(curl -s -o /dev/null -w '%{http_code}' -m 1 "http://127.0.0.1:$port/readyz" || true)
      [ "$code" != 200 ] && break
      sleep 0.02
    done
    reload_nginx "$down_a" "$down_b"
    wait "$pid" 2>/dev/null || true
    start_instance "$port" "$mode"
    if [ "$port" = "$PA" ]; then PID_A=$LAST_PID; else PID_B=$LAST_PID; fi
    reload_nginx 0 0
    PIDS=("$PID_A" "$PID_B")
    sleep "$interval"
  done
  wait "$WRK" || true
  requests=$(awk '/requests in/ {print $1}' "$WORK/wrk-$mode.txt")
  non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$WORK/wrk-$mode.txt")
  errors=$(awk '/Socket errors:/ {gsub(",", ""); print $4 + $6 + $8 + $10}' "$WORK/wrk-$mode.txt")
  grep -E "Socket errors" "$WORK/wrk-$mode.txt" >&2 || true
  echo "$mode: requests=${requests:-0} non2xx=${non2xx:-0} socket_errors=${errors:-0} restarts=$RESTARTS"
  kill -TERM "$PID_A" "$PID_B" 2>/dev/null || true
  wait "$PID_A" "$PID_B" 2>/dev/null || true
done
