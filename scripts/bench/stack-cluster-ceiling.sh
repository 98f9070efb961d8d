#!/usr/bin/env bash
# What a 3-master Redis Cluster adds to the fleet's Redis ceiling: tower-scale's bench app runs
# the contract's Redis scenarios (shared/bench/SCENARIOS.md) against one redis-server, then
# against a local 3-master cluster (no replicas), in one run; per scenario it reports what a
# request costs Redis (commands and CPU µs, summed and per master), how evenly the masters
# share it, and the requests/s Redis can serve at that cost: one core (the standalone server),
# against three masters (each master saturates at 10^6 / its own µs per request, so the
# cluster at 10^6 / the busiest master's).
#
#   SHARED_DIR=/path/to/shared scripts/bench/stack-cluster-ceiling.sh
#   DURATION=5 ROUNDS=3 SCENARIOS="limited cached" scripts/bench/stack-cluster-ceiling.sh
#
# env:
#   SHARED_DIR   the shared folder with bench/ (default: `shared` next to the repository root)
#   SCENARIOS    default "login session whoami limited cached" (those that reach Redis)
#   ROUNDS       how many times both setups run (default 1); the table takes each figure's
#                median over the rounds, standalone and cluster interleaved in time
#   DURATION, THREADS, CONNECTIONS, WARM_CACHED, PAUSE: passed to run-scenarios.sh
#   OUT          results folder (default: target/cluster-ceiling/<timestamp>)
# Redis cost per scenario and server: CONFIG RESETSTAT and INFO cpu before, INFO commandstats
# and INFO cpu after (used_cpu_user + used_cpu_sys), over wrk's requests. Commands inside a
# Lua script count, as INFO counts them; the logins run-scenarios.sh makes before /session
# and /whoami count with the scenario. Redis's own background work (serverCron, and on the
# cluster the bus's pings) is included; OUT/idle.txt has it for DURATION seconds without load.
# The servers are flushed before each setup. Writes OUT/raw.txt (round setup scenario master
# requests commands cpu_us), OUT/idle.txt and OUT/table.md.
# Installs wrk, curl, redis-server, redis-tools and python3 from Debian's packages when missing.
set -euo pipefail
. "$(dirname "$0")/../lib/common.sh"
shared_dir
[ -f "$SHARED_DIR/bench/run-scenarios.sh" ] || die "no bench/run-scenarios.sh in SHARED_DIR=$SHARED_DIR"
install_missing wrk curl redis-server redis-cli:redis-tools python3
SCENARIOS_ALL="${SCENARIOS:-login session whoami limited cached}"
ROUNDS="${ROUNDS:-1}"
case "$ROUNDS" in '' | *[!0-9]* | 0) die "ROUNDS must be a positive integer" ;; esac
for s in $SCENARIOS_ALL; do
  case "$s" in login | session | whoami | limited | cached | hello) ;;
    *) die "unknown or Redis-free scenario '$s' (login session whoami limited cached hello)" ;;
  esac
done
OUT="${OUT:-$ROOT/target/cluster-ceiling/$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$OUT"

echo "building tower-scale's bench app (release)"
(cd "$ROOT" && cargo build --release --quiet -p example-bench-app)
BENCH_APP="${CARGO_TARGET_DIR:-$ROOT/target}/release/example-bench-app"

WORK="$(mktemp -d)"
PIDS=()
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill -TERM "$SERVER_PID" 2>/dev/null || true; fi
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# A free port whose cluster bus port (+10000) is free too.
free_cluster_port() {
  python3 -c '
import socket
while True:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]
    if p + 10000 > 65535: s.close(); continue
    b = socket.socket()
    try:
        b.bind(("127.0.0.1", p + 10000)); print(p); break
    except OSError:
        pass
    finally:
        b.close(); s.close()'
}
# Starts redis-server on $1 in its own folder with the remaining arguments; waits for PING.
spawn_redis() { # port args...
  local port=$1; shift
  mkdir -p "$WORK/$port"
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK/$port" \
    --daemonize no --loglevel warning "$@" >"$WORK/$port/redis.log" 2>&1 &
  PIDS+=("$!")
  for _ in $(seq 100); do
    redis-cli -p "$port" ping >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  die "redis-server did not start on $port: $(tail -3 "$WORK/$port/redis.log")"
}

# One standalone server, and three cluster-enabled ones joined as masters (as crates/testkit
# does it).
SINGLE="$(free_port)"
spawn_redis "$SINGLE"
MASTERS=()
for _ in 1 2 3; do
  port="$(free_cluster_port)"
  spawn_redis "$port" --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 2000
  MASTERS+=("$port")
done
redis-cli --cluster create "${MASTERS[@]/#/127.0.0.1:}" --cluster-replicas 0 --cluster-yes \
  >"$WORK/create.log" 2>&1 || die "redis-cli --cluster create failed: $(tail -5 "$WORK/create.log")"
for _ in $(seq 200); do
  ok=0
  for port in "${MASTERS[@]}"; do
    redis-cli -p "$port" cluster info | grep -q '^cluster_state:ok' && ok=$((ok + 1))
  done
  [ "$ok" -eq 3 ] && break
  sleep 0.1
done
[ "$ok" -eq 3 ] || die "the cluster did not reach cluster_state:ok"
CLUSTER_URL="$(printf 'redis://127.0.0.1:%s,' "${MASTERS[@]}")"
CLUSTER_URL="${CLUSTER_URL%,}"


# Background CPU with no load, per server, over DURATION seconds.
{
  declare -A idle0
  for port in "$SINGLE" "${MASTERS[@]}"; do idle0[$port]="$(redis_cpu_us "$port")"; done
  sleep "${DURATION:-10}"
  for port in "$SINGLE" "${MASTERS[@]}"; do
    echo "$port $(( $(redis_cpu_us "$port") - ${idle0[$port]} ))"
  done
} >"$OUT/idle.txt"

: >"$OUT/raw.txt"
echo "results in $OUT"
for round in $(seq "$ROUNDS"); do
  for setup in standalone cluster; do
    if [ "$setup" = standalone ]; then
      servers=("$SINGLE")
      env=(REDIS_URL="redis://127.0.0.1:$SINGLE")
    else
      servers=("${MASTERS[@]}")
      env=(REDIS_URL="$CLUSTER_URL" REDIS_MODE=cluster)
    fi
    for port in "${servers[@]}"; do redis-cli -p "$port" flushall >/dev/null; done
    app_port="$(free_port)"
    echo "== round $round: $setup ($(cut -d' ' -f1-3 /proc/loadavg) load)"
    env "${env[@]}" PORT="$app_port" BENCH_MODE=full "$BENCH_APP" >>"$OUT/app-$setup.log" 2>&1 &
    SERVER_PID=$!
    up=0
    for _ in $(seq 600); do
      if curl -fsS -m 2 -o /dev/null "http://127.0.0.1:$app_port/hello" 2>/dev/null; then up=1; break; fi
      kill -0 "$SERVER_PID" 2>/dev/null || break
      sleep 0.2
    done
    [ "$up" -eq 1 ] || die "the bench app did not start against the $setup setup; see $OUT/app-$setup.log"
    first=1
    for scenario in $SCENARIOS_ALL; do
      [ "$first" = 1 ] || sleep "${PAUSE:-1}"
      first=0
      declare -A cpu0=()
      for port in "${servers[@]}"; do
        redis-cli -p "$port" config resetstat >/dev/null
        cpu0[$port]="$(redis_cpu_us "$port")"
      done
      SCENARIOS="$scenario" OUT_DIR="$OUT/wrk-$round-$setup" "$SHARED_DIR/bench/run-scenarios.sh" \
        "http://127.0.0.1:$app_port" | sed "s/^/$round $setup /" | tee -a "$OUT/results.txt" || true
      requests="$(awk '/requests in/ { print $1 }' "$OUT/wrk-$round-$setup/$scenario.txt" 2>/dev/null || true)"
      [ -n "$requests" ] && [ "$requests" -gt 0 ] || { echo "$SCRIPT: no requests for $scenario" >&2; continue; }
      for port in "${servers[@]}"; do
        echo "$round $setup $scenario $port $requests $(redis_commands "$port" "|cluster|ping") $(( $(redis_cpu_us "$port") - ${cpu0[$port]} ))" \
          >>"$OUT/raw.txt"
      done
    done
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
  done
done

python3 - "$OUT/raw.txt" "$OUT/results.txt" "$OUT/idle.txt" "${DURATION:-10}" >"$OUT/table.md" <<'EOF'
import sys, statistics
from collections import defaultdict
raw, results, idle, duration = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
# (setup, scenario) -> round -> [(requests, commands, cpu_us)] per master, in port order
runs = defaultdict(lambda: defaultdict(list))
order = []
for line in open(raw):
    r, setup, scenario, port, n, c, cpu = line.split()
    runs[(setup, scenario)][r].append((int(n), int(c), int(cpu)))
    if scenario not in order:
        order.append(scenario)
rps = defaultdict(list)
for line in open(results):
    f = line.split()
    if len(f) >= 4:
        rps[(f[1], f[2])].append(float(f[3]))
med = statistics.median
def figures(setup, scenario):
    per_round = []
    for rounds in runs[(setup, scenario)].values():
        n = rounds[0][0]
        per_round.append(([c / n for _, c, _ in rounds], [u / n for _, _, u in rounds]))
    k = len(per_round[0][0])
    cmds = [med(r[0][i] for r in per_round) for i in range(k)]
    us = [med(r[1][i] for r in per_round) for i in range(k)]
    return cmds, us
print("| scenario | one Redis: commands / µs per request | 3 masters: commands / µs per request, summed | per master: µs per request | busiest / mean | ceiling, one core (req/s) | ceiling, 3 masters (req/s) | ratio | bench req/s (one / cluster) |")
print("|---|---|---|---|---|---|---|---|---|")
for s in order:
    if ("standalone", s) not in runs or ("cluster", s) not in runs:
        continue
    c1, u1 = figures("standalone", s)
    c3, u3 = figures("cluster", s)
    one = 1e6 / u1[0] if u1[0] > 0 else float("inf")
    three = 1e6 / max(u3) if max(u3) > 0 else float("inf")
    mean = sum(u3) / len(u3)
    print(f"| `{s}` | {c1[0]:.2f} / {u1[0]:.2f} | {sum(c3):.2f} / {sum(u3):.2f} | "
          + " / ".join(f"{u:.2f}" for u in u3)
          + f" | {max(u3) / mean:.2f} | {one:,.0f} | {three:,.0f} | {three / one:.2f}× | "
          + f"{med(rps[('standalone', s)]):,.0f} / {med(rps[('cluster', s)]):,.0f} |")
idle_us = [int(l.split()[1]) for l in open(idle)]
print()
print(f"Background CPU without load over {duration:g} s (µs): one Redis {idle_us[0]}, "
      + "masters " + " / ".join(str(u) for u in idle_us[1:]) + " (included in the figures above).")
EOF
cat "$OUT/table.md"
