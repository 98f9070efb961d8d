#!/usr/bin/env bash
# Renders the Grafana dashboard (docs/grafana/tower-scale.json) from real data: one redis-server,
# two instances of the bench app with metrics on (BENCH_METRICS=on, release build) and a real
# Prometheus scraping both every second, all on 127.0.0.1 in a temporary directory; paced
# traffic over the contract's scenarios (scripts/lib/dashboard-traffic.lua, one wrk per
# instance): WARMUP seconds (so the panels' 1-minute rates start full), then DURATION seconds
# with a Redis outage in the middle (SIGSTOP for OUTAGE seconds, then SIGCONT); then every
# panel's queries evaluated with Prometheus's query_range over those DURATION seconds and drawn
# in the dashboard's layout into one PNG (scripts/lib/dashboard-render.py, matplotlib).
#
#   scripts/dashboard-render.sh                       # writes docs/img/dashboard.png
#   CHECK=1 OUT=/tmp/dashboard.png scripts/dashboard-render.sh
#
# Environment:
#   OUT            the PNG (default docs/img/dashboard.png)
#   CHECK=1        exit 1 when a panel has no data (a broken query, a renamed metric)
#   WARMUP         seconds of traffic before the drawn window (default 60)
#   DURATION       seconds of traffic drawn (default 120)
#   OUTAGE_AT      seconds into the drawn window when Redis is stopped (default 40)
#   OUTAGE         seconds Redis stays stopped (default 5)
#   CONNECTIONS    wrk connections per instance (default 16)
#   DELAY_MS       pause of each connection between its requests (default 25)
#   MAX_IN_FLIGHT  the instances' in-flight cap (BENCH_MAX_IN_FLIGHT, default 12: below
#                  CONNECTIONS, so requests piling up while Redis is stopped are shed)
#   STEP           seconds between the drawn points (default 2)
#   BENCH_APP      a bench-app binary to use instead of building it (cargo build --release
#                  -p example-bench-app, into CARGO_TARGET_DIR or target/)
#   KEEP=1         keep the temporary directory (logs, Prometheus's data)
# Takes about WARMUP + DURATION + 20 s once the bench app is built. Installs prometheus, wrk, curl,
# redis-server and python3-matplotlib from Debian's packages when missing. Not part of
# scripts/test.sh: it needs a release build and minutes of traffic.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
OUT="${OUT:-$ROOT/docs/img/dashboard.png}"
WARMUP="${WARMUP:-60}"
DURATION="${DURATION:-120}"
OUTAGE_AT="${OUTAGE_AT:-40}"
OUTAGE="${OUTAGE:-5}"
CONNECTIONS="${CONNECTIONS:-16}"
DELAY_MS="${DELAY_MS:-25}"
MAX_IN_FLIGHT="${MAX_IN_FLIGHT:-12}"
STEP="${STEP:-2}"
DASHBOARD="$ROOT/docs/grafana/tower-scale.json"
for var in WARMUP DURATION OUTAGE_AT OUTAGE CONNECTIONS DELAY_MS MAX_IN_FLIGHT STEP; do
  case "${!var}" in '' | *[!0-9]*) die "$var must be a whole number (got '${!var}')" ;; esac
done
[ "$CONNECTIONS" -ge 1 ] && [ "$STEP" -ge 1 ] || die "CONNECTIONS and STEP must be at least 1"
[ $((OUTAGE_AT + OUTAGE)) -lt "$DURATION" ] || die "OUTAGE_AT + OUTAGE must end before DURATION"

# Debian's matplotlib is for Debian's python3 (/usr/bin/python3), which may not be the first
# python3 on PATH: use the first interpreter that has it, installing it when none has.
pick_python() {
  local py
  for py in python3 /usr/bin/python3; do
    if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import matplotlib' 2>/dev/null; then
      PYTHON="$py"
      return 0
    fi
  done
  return 1
}
install_missing prometheus wrk curl redis-server redis-cli:redis-tools python3
# python3-matplotlib is no command: named only when missing, install_missing installs it.
pick_python || install_missing python3-matplotlib:python3-matplotlib
pick_python || die "python3-matplotlib is installed but no python3 imports matplotlib"

if [ -z "${BENCH_APP:-}" ]; then
  echo "building the bench app (cargo build --release -p example-bench-app)" >&2
  (cd "$ROOT" && cargo build --release --quiet -p example-bench-app)
  BENCH_APP="${CARGO_TARGET_DIR:-$ROOT/target}/release/example-bench-app"
fi
[ -x "$BENCH_APP" ] || die "BENCH_APP=$BENCH_APP is not an executable"

WORK="$(mktemp -d -t tower-scale-dashboard-XXXXXX)"
APP_PIDS=()
WRK_PIDS=()
PROM_PID=""
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
  trap - EXIT INT TERM
  if [ -n "${REDIS_PID:-}" ]; then kill -CONT "$REDIS_PID" 2>/dev/null || true; fi
  for pid in "${WRK_PIDS[@]}" "${APP_PIDS[@]}" $PROM_PID; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${WRK_PIDS[@]}" "${APP_PIDS[@]}" $PROM_PID; do wait "$pid" 2>/dev/null || true; done
  stop_redis
  if [ -n "${KEEP:-}" ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Waits until URL answers 200, while PID lives; LOG's tail explains a failure.
wait_for() { # url pid log
  for _ in $(seq 300); do
    curl -fsS -m 1 -o /dev/null "$1" 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || break
    sleep 0.1
  done
  die "$1 does not answer: $(tail -3 "$3" 2>/dev/null)"
}

start_redis
APP_PORTS=("$(free_port)" "$(free_port)")
for port in "${APP_PORTS[@]}"; do
  BENCH_METRICS=on BENCH_MAX_IN_FLIGHT="$MAX_IN_FLIGHT" REDIS_URL="$REDIS_URL" HOST=127.0.0.1 \
    PORT="$port" "$BENCH_APP" >"$WORK/app-$port.log" 2>&1 &
  APP_PIDS+=($!)
done
for i in 0 1; do wait_for "http://127.0.0.1:${APP_PORTS[$i]}/metrics" "${APP_PIDS[$i]}" "$WORK/app-${APP_PORTS[$i]}.log"; done

PROM_PORT="$(free_port)"
cat >"$WORK/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: bench-app
    static_configs:
      - targets: ["127.0.0.1:${APP_PORTS[0]}", "127.0.0.1:${APP_PORTS[1]}"]
EOF
prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/prometheus" \
  --web.listen-address="127.0.0.1:$PROM_PORT" --log.level=warn >"$WORK/prometheus.log" 2>&1 &
PROM_PID=$!
PROM="http://127.0.0.1:$PROM_PORT"
wait_for "$PROM/-/ready" "$PROM_PID" "$WORK/prometheus.log"

echo "traffic: ${WARMUP}s + ${DURATION}s on 127.0.0.1:${APP_PORTS[0]} and :${APP_PORTS[1]} ($CONNECTIONS connections each, ${DELAY_MS} ms apart); Redis stopped ${OUTAGE_AT}s after the warm-up, for ${OUTAGE}s" >&2
for port in "${APP_PORTS[@]}"; do
  DELAY_MS="$DELAY_MS" wrk -t1 -c"$CONNECTIONS" -d"$((WARMUP + DURATION))s" --timeout 5s \
    -s "$ROOT/scripts/lib/dashboard-traffic.lua" "http://127.0.0.1:$port" >"$WORK/wrk-$port.txt" 2>&1 &
  WRK_PIDS+=($!)
done
sleep "$WARMUP"
START=$(date +%s)
sleep "$OUTAGE_AT"
kill -STOP "$REDIS_PID"
STOPPED=$(date +%s)
sleep "$OUTAGE"
kill -CONT "$REDIS_PID"
RESUMED=$(date +%s)
for pid in "${WRK_PIDS[@]}"; do wait "$pid" || die "wrk failed: $(cat "$WORK"/wrk-*.txt)"; done
WRK_PIDS=()
sleep 2 # the last scrape
END=$(date +%s)
for port in "${APP_PORTS[@]}"; do
  echo "wrk on :$port: $(grep -E 'requests in|Non-2xx|Socket errors|Requests/sec' "$WORK/wrk-$port.txt" | tr -s ' ' | paste -sd';' -)" >&2
done

mkdir -p "$(dirname "$OUT")"
check=()
[ -z "${CHECK:-}" ] || check=(--check)
"$PYTHON" "$ROOT/scripts/lib/dashboard-render.py" --prometheus "$PROM" --start "$START" \
  --end "$END" --step "$STEP" --mark "$STOPPED:$RESUMED:Redis stopped (SIGSTOP)" \
  "${check[@]}" "$DASHBOARD" "$OUT"
