#!/usr/bin/env bash
# Instructions per request under callgrind (valgrind), which other processes on a shared
# machine do not disturb: tower-scale-compression against plain tower-http, gzip 6 on 1 KB,
# 20 KB and 200 KB JSON, then brotli 4 on 200 KB (encoded on the pool by tower-scale; the pool
# threads are counted too), then two pass-through cases: a 13-byte text body with
# `Accept-Encoding: gzip` (under both thresholds, like the bench app's /hello) and 1 KB of JSON
# without `Accept-Encoding`. `none` is the same router without a compression layer; `ratio` is
# tower-scale / tower-http.
#   scripts/bench/compression-instructions.sh
#   CASES="gzip 6 gzip 1024 40" scripts/bench/compression-instructions.sh   # one case
# Each case runs twice: with glibc's malloc as it is, and with its per-thread caches off
# (GLIBC_TUNABLES=glibc.malloc.tcache_count=0:glibc.malloc.mxfast=0). With the caches on, a
# small freed chunk that happens to sit at the top of the heap stays cached there, so the heap
# is never trimmed and the ~250 KB deflate state calloc'd per gzip response comes from reused
# memory that calloc must clear (~55,000 more instructions per response) instead of fresh pages
# it need not: whether that happens depends on the process's earlier allocations (it flips with
# unrelated changes to either variant). The second table is free of that lottery.
# CASES: the cases to run, separated by commas, each "<encoding> <level> <accept> <body bytes>
# <requests>" (default: the six above). Needs valgrind, python3 and bc.
set -euo pipefail
. "$(dirname "$0")/../lib/common.sh"
need valgrind bc
CASES="${CASES:-gzip 6 gzip 1024 40,gzip 6 gzip 20000 40,gzip 6 gzip 200000 10,br 4 br 200000 10,gzip 6 gzip 13 200,gzip 6 none 1024 200}"
bin="$(bench_bin tower-scale-compression instructions)"
per_request() { # variant size n
  local a b
  a="$(callgrind_count "$bin" "$1" "$2" 0)"
  b="$(callgrind_count "$bin" "$1" "$2" "$3")"
  echo $(( (b - a) / $3 ))
}
table() {
printf '%-10s %-7s %8s %12s %12s %12s %8s\n' encoding accept body none tower_http tower_scale ratio
local case
IFS=, read -r -a cases <<<"$CASES"
for case in "${cases[@]}"; do
  # shellcheck disable=SC2086 # a case is five words
  set -- $case
  export ENCODING=$1 LEVEL=$2 ACCEPT=$3
  bare="$(per_request none "$4" "$5")"
  theirs="$(per_request tower_http "$4" "$5")"
  ours="$(per_request tower_scale "$4" "$5")"
  printf '%-10s %-7s %8s %12s %12s %12s %8.3f\n' "$1 $2" "$3" "$4" "$bare" "$theirs" "$ours" \
    "$(echo "$ours / $theirs" | bc -l)"
done
}
echo "== glibc malloc defaults"
table
echo "== glibc malloc caches off (GLIBC_TUNABLES=glibc.malloc.tcache_count=0:glibc.malloc.mxfast=0)"
GLIBC_TUNABLES=glibc.malloc.tcache_count=0:glibc.malloc.mxfast=0 table
