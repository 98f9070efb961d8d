#!/usr/bin/env bash
# Every compression benchmark in one run (docs/performance.md quotes its output):
#   scripts/bench/compression-all.sh 2>&1 | tee compression-bench.txt
# 1. throughput on 1 KB, 20 KB and 200 KB JSON against plain tower-http (in process), gzip 6,
#    then 200 KB at brotli 4,
# 2. p99 of a small request while 200 KB bodies are compressed with brotli 11 (then with a
#    one-thread pool, then at brotli 4), over loopback HTTP,
# 3. the /json scenario of the shared bench contract with wrk (scripts/bench/compression-json.sh),
# 4. instructions per request under callgrind (scripts/bench/compression-instructions.sh).
# The environment of those two scripts applies (SHARED_DIR or DOC, ROUNDS, DURATION, CASES, ...).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/../.."
echo "== $(date -u +%FT%TZ) $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-); load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== 1. throughput"
cargo bench -p tower-scale-compression --bench throughput
echo "== 1b. throughput, 200 KB at brotli 4 (a cheap level: what the pool hop costs)"
ENCODING=br LEVEL=4 SIZES=200000 cargo bench -p tower-scale-compression --bench throughput
echo "== 2. small-request latency under brotli 11"
cargo bench -p tower-scale-compression --bench latency
echo "== 2b. the same with a pool of one thread (leaves a CPU to the async workers)"
POOL_THREADS=1 SECS=5 cargo bench -p tower-scale-compression --bench latency
echo "== 2c. the same at brotli 4 (a cheap level)"
LEVEL=4 SECS=5 cargo bench -p tower-scale-compression --bench latency
echo "== 3. /json scenario"
"$here/compression-json.sh"
echo "== 4. instructions per request (callgrind)"
"$here/compression-instructions.sh"
echo "== done $(date -u +%FT%TZ); load: $(cut -d' ' -f1-3 /proc/loadavg)"
