#!/usr/bin/env bash
# The /json scenario of the shared bench contract (bench/SCENARIOS.md in SHARED_DIR): GET /json
# returning doc-20k.json, gzip-compressed, loaded with `wrk -t1 -c64 -d10s --latency -H 'Accept-Encoding: gzip'`,
# served with tower-scale-compression, with plain tower-http CompressionLayer (both gzip
# level 6) and without compression, in one run, rounds interleaved; prints requests/s and
# p99 of each and their ratios (median of the per-round ratios).
#
#   scripts/bench/compression-json.sh
#   ROUNDS=1 DURATION=2s LAYERS="tower-scale tower-http" scripts/bench/compression-json.sh
#
# Environment: ROUNDS (3), DURATION (10s), LAYERS ("tower-scale tower-http none"), DOC (the
# document; default bench/data/doc-20k.json of SHARED_DIR). Installs wrk when missing; needs
# curl and python3.
set -euo pipefail
. "$(dirname "$0")/../lib/common.sh"
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-10s}"
if [ -z "${DOC:-}" ]; then shared_dir; DOC="$SHARED_DIR/bench/data/doc-20k.json"; fi
LAYERS="${LAYERS:-tower-scale tower-http none}"
[ -f "$DOC" ] || die "no document at $DOC (set DOC or SHARED_DIR)"
install_missing wrk
need curl python3
bin="$(bench_bin tower-scale-compression json_server)"

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

run_one() { # layer round
  local layer="$1" round="$2" log="$out/server.log" pid addr
  "$bin" --layer "$layer" --port 0 --doc "$DOC" >"$log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do grep -q listening "$log" && break; sleep 0.05; done
  addr="$(sed -n 's/^listening on //p' "$log")"
  if [ "$layer" != none ]; then
    curl -s -o /dev/null -D - -H 'Accept-Encoding: gzip' "http://$addr/json" | grep -qi '^content-encoding: gzip' \
      || { echo "$layer: /json is not gzip-encoded" >&2; kill "$pid"; exit 1; }
  fi
  wrk -t1 -c64 -d2s -H 'Accept-Encoding: gzip' "http://$addr/json" >/dev/null   # warm-up
  wrk -t1 -c64 -d"$DURATION" --latency -H 'Accept-Encoding: gzip' "http://$addr/json" >"$out/$layer.$round.txt"
  kill -TERM "$pid"
  wait "$pid"
}

for round in $(seq "$ROUNDS"); do
  for layer in $LAYERS; do
    run_one "$layer" "$round"
  done
done

# shellcheck disable=SC2086 # one argument per layer
DURATION="$DURATION" python3 - "$out" "$ROUNDS" $LAYERS <<'PY'
import os, re, statistics, sys
out, rounds, layers = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
def ms(v):
    n, unit = re.match(r"([\d.]+)(us|ms|s)", v).groups()
    return float(n) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
res = {}
for layer in layers:
    for r in range(1, rounds + 1):
        text = open(f"{out}/{layer}.{r}.txt").read()
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
        p99 = ms(re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1))
        errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", text)
        res.setdefault(layer, []).append((rps, p99, errors.group(0) if errors else ""))
print(f"GET /json (doc-20k.json, gzip 6), wrk -t1 -c64 -d{os.environ['DURATION']} --latency, {rounds} rounds interleaved")
print(f"{'layer':<12} {'round req/s':<40} {'median req/s':>12} {'median p99 ms':>14}")
for layer in layers:
    rows = res[layer]
    print(f"{layer:<12} {' '.join(f'{r[0]:.0f}' for r in rows):<40} {statistics.median(r[0] for r in rows):>12.0f} "
          f"{statistics.median(r[1] for r in rows):>14.2f}" + ("  " + rows[0][2] if rows[0][2] else ""))
base = "tower-http"
if base in res:
    for layer in layers:
        if layer == base: continue
        rps = statistics.median(a[0] / b[0] for a, b in zip(res[layer], res[base]))
        p99 = statistics.median(a[1] / b[1] for a, b in zip(res[layer], res[base]))
        print(f"{layer} ÷ {base}: req/s {rps:.3f}, p99 {p99:.3f}")
PY
