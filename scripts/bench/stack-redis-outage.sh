#!/usr/bin/env bash
# Every endpoint of the bench contract while Redis fails, beside the peers, in one run against
# one Redis: paused 3 s (SIGSTOP), killed and restarted empty after 3 s, and every packet to and
# from it dropped for 3 s (iptables in a private network namespace). Per implementation and
# endpoint: median and max latency before / during / after, non-2xx answers during, and how
# long after Redis came back the endpoint still failed.
#
#   scripts/bench/stack-redis-outage.sh
#   IMPLS=tower-scale FAULTS=pause scripts/bench/stack-redis-outage.sh
#
# env:
#   SHARED_DIR   the shared folder with bench/ and peers/ (default: `shared` next to the
#                repository root)
#   IMPLS        default "tower-scale rust-tower node-express", built and started as
#                stack-side-by-side.sh does
#   FAULTS       default "pause restart drop"
#   PHASE        seconds before, during and after each fault (default 3)
#   CONNECTIONS  wrk connections loading /hello throughout (default 8; 0: no load)
#   OUT          results folder (default target/redis-outage/<timestamp>)
#   RUST_PEER_TARGET_DIR, NODE_PEER_DEPS_DIR  as for stack-side-by-side.sh
# Redis runs in a network namespace of its own (so that packets to it can be dropped), joined
# by a veth pair on 100.64.213.0/30: this needs root. Without namespaces (not root, a sandbox)
# the script stops; `FAULTS="pause restart"` without namespaces is not offered, to keep one
# setup for every figure.
# Load: wrk on /hello (CONNECTIONS connections) while scripts/lib/outage-probe.py sends each
# endpoint's requests one after another (5 ms apart) and records their latency; the tables come
# from scripts/lib/outage-report.py.
# Installs wrk, curl, redis-server, python3, iproute2, iptables and npm from Debian's packages
# when missing.
set -euo pipefail
. "$(dirname "$0")/../lib/common.sh"
shared_dir
IMPLS="${IMPLS:-tower-scale rust-tower node-express}"
FAULTS="${FAULTS:-pause restart drop}"
PHASE="${PHASE:-3}"
CONNECTIONS="${CONNECTIONS:-8}"
OUT="${OUT:-$ROOT/target/redis-outage/$(date -u +%Y%m%dT%H%M%SZ)}"
RUST_PEER_TARGET_DIR="${RUST_PEER_TARGET_DIR:-$ROOT/target/rust-tower-peer}"
NODE_PEER_DEPS_DIR="${NODE_PEER_DEPS_DIR:-$ROOT/target/node-express-peer}"
case "$PHASE" in '' | *[!0-9]* | 0) die "PHASE must be a positive number of seconds" ;; esac
case "$CONNECTIONS" in '' | *[!0-9]*) die "CONNECTIONS must be a number" ;; esac
for fault in $FAULTS; do
  case "$fault" in pause | restart | drop) ;; *) die "unknown fault '$fault' (pause, restart, drop)" ;; esac
done
for impl in $IMPLS; do
  case "$impl" in tower-scale | rust-tower | node-express) ;; *) die "unknown implementation '$impl'" ;; esac
done
[ "$(id -u)" -eq 0 ] || die "needs root: Redis runs in a network namespace of its own"
mkdir -p "$OUT"

case " $IMPLS " in *" node-express "*) install_missing node:nodejs npm ;; esac
install_missing wrk curl redis-server redis-cli:redis-tools python3 ip:iproute2 iptables

# --- build everything before anything is timed ------------------------------------------------
case " $IMPLS " in *" tower-scale "*)
  echo "building tower-scale's bench app (release)"
  (cd "$ROOT" && cargo build --release --quiet -p example-bench-app)
  BENCH_APP="${CARGO_TARGET_DIR:-$ROOT/target}/release/example-bench-app" ;;
esac
case " $IMPLS " in *" rust-tower "*) build_rust_peer ;; esac
case " $IMPLS " in *" node-express "*) install_node_peer ;; esac

# --- Redis in a network namespace of its own --------------------------------------------------
NS="tsout$$"
HOST_IF="tsoh$$"
NS_IF="tsoi$$"
HOST_IP=100.64.213.1
NS_IP=100.64.213.2
REDIS_PORT=6379
REDIS_URL="redis://$NS_IP:$REDIS_PORT"
REDIS_PID=""
SERVER_PID=""
WRK_PID=""
REDIS_DIR="$(mktemp -d)"
cleanup() {
  for pid in "$WRK_PID" "$SERVER_PID"; do
    if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null || true; fi
  done
  if [ -n "$REDIS_PID" ]; then kill -KILL "$REDIS_PID" 2>/dev/null || true; fi
  wait 2>/dev/null || true
  ip link del "$HOST_IF" 2>/dev/null || true
  ip netns del "$NS" 2>/dev/null || true
  rm -rf "$REDIS_DIR"
}
trap cleanup EXIT
ip netns add "$NS" || die "cannot create a network namespace (a sandbox that refuses them?)"
ip link add "$HOST_IF" type veth peer name "$NS_IF"
ip link set "$NS_IF" netns "$NS"
ip addr add "$HOST_IP/30" dev "$HOST_IF"
ip link set "$HOST_IF" up
ip -n "$NS" addr add "$NS_IP/30" dev "$NS_IF"
ip -n "$NS" link set "$NS_IF" up
ip -n "$NS" link set lo up

start_redis_ns() {
  # `ip netns exec` execs redis-server: $! is the server's pid.
  (cd "$REDIS_DIR" && exec ip netns exec "$NS" redis-server --bind "$NS_IP" --port "$REDIS_PORT" \
    --protected-mode no --save '' --appendonly no --loglevel warning) >>"$OUT/redis.log" 2>&1 &
  REDIS_PID=$!
  for _ in $(seq 100); do
    redis-cli -h "$NS_IP" -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG && return 0
    sleep 0.05
  done
  die "redis-server did not start in $NS"
}
start_redis_ns
echo "redis on $REDIS_URL (namespace $NS); results in $OUT"

fault_on() {
  case "$1" in
    pause) kill -STOP "$REDIS_PID" ;;
    restart) kill -KILL "$REDIS_PID"; wait "$REDIS_PID" 2>/dev/null || true ;;
    drop) ip netns exec "$NS" iptables -A INPUT -i "$NS_IF" -j DROP
          ip netns exec "$NS" iptables -A OUTPUT -o "$NS_IF" -j DROP ;;
  esac
}
fault_off() {
  case "$1" in
    pause) kill -CONT "$REDIS_PID" ;;
    restart) start_redis_ns ;;
    drop) ip netns exec "$NS" iptables -F INPUT; ip netns exec "$NS" iptables -F OUTPUT ;;
  esac
}

start_impl() { # name port
  local name=$1 port=$2
  export PORT=$port REDIS_URL
  case "$name" in
    tower-scale) BENCH_MODE=full exec "$BENCH_APP" ;;
    rust-tower) exec "$RUST_PEER" ;;
    node-express) NODE_ENV="${NODE_ENV:-production}" NODE_PATH="$NODE_PEER_DEPS_DIR/node_modules" \
                    exec node "$SHARED_DIR/peers/node-express/server.js" ;;
  esac
}

for impl in $IMPLS; do
  for fault in $FAULTS; do
    redis-cli -h "$NS_IP" -p "$REDIS_PORT" flushall >/dev/null
    port="$(free_port)"
    echo "== $impl, $fault, port $port ($(cut -d' ' -f1-3 /proc/loadavg) load)"
    start_impl "$impl" "$port" >>"$OUT/$impl.log" 2>&1 &
    SERVER_PID=$!
    up=0
    for _ in $(seq 600); do
      if curl -fsS -m 2 -o /dev/null "http://127.0.0.1:$port/hello" 2>/dev/null; then up=1; break; fi
      kill -0 "$SERVER_PID" 2>/dev/null || break
      sleep 0.2
    done
    [ "$up" -eq 1 ] || die "$impl did not start; see $OUT/$impl.log"
    phases="$OUT/phase"
    echo before >"$phases"
    if [ "$CONNECTIONS" -gt 0 ]; then
      wrk -t1 -c"$CONNECTIONS" -d"$((PHASE * 3 + 2))s" --timeout 10s "http://127.0.0.1:$port/hello" \
        >"$OUT/wrk-$impl-$fault.txt" 2>&1 &
      WRK_PID=$!
    fi
    python3 "$ROOT/scripts/lib/outage-probe.py" "http://127.0.0.1:$port" "$phases" \
      "$OUT/$impl-$fault.txt" &
    probe=$!
    sleep "$PHASE"
    echo during >"$phases"
    fault_on "$fault"
    sleep "$PHASE"
    fault_off "$fault"
    echo after >"$phases"
    sleep "$PHASE"
    echo stop >"$phases"
    wait "$probe"
    if [ -n "$WRK_PID" ]; then wait "$WRK_PID" 2>/dev/null || true; WRK_PID=""; fi
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
  done
done

{
  echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "cpu: $(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -n1), $(nproc) vCPU"
  echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "settings: PHASE=$PHASE CONNECTIONS=$CONNECTIONS (wrk on /hello)"
} >"$OUT/machine.txt"
python3 "$ROOT/scripts/lib/outage-report.py" "$OUT" >"$OUT/table.md"
cat "$OUT/machine.txt" "$OUT/table.md"
