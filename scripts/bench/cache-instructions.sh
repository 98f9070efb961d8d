#!/usr/bin/env bash
# Instructions per `GET /cached/{id}` hit under callgrind (crates/cache/benches/hit_ir.rs):
# the cache layer, the typed API and hand-written cache-aside handlers, over 1,000 ids warmed
# first, against a real redis-server the bench starts (not counted: its own process).
#
#   scripts/bench/cache-instructions.sh                       # every variant
#   N=200 scripts/bench/cache-instructions.sh raw_get cache_hit
#
# Variants: redis_rs_get (the Rust peer's handler on a bare redis-rs connection), raw_get (the
# same through RedisBackend), fetch_bytes (that handler on Cache::get_or_fetch_bytes),
# cache_hit (ResponseCacheLayer as a route layer), cache_hit_handler_layer (around the handler).
# Each variant runs twice under callgrind, with no request and with N; the difference / N is
# one request. Environment: N (5000); PROFILE=1 also prints, per variant, where a request's
# instructions go: the 25 functions with the largest own cost per request, and the allocator's
# share (Rust's allocator shims, glibc's malloc, free and their internals). Needs valgrind,
# python3 and redis-server.
set -euo pipefail
. "$(dirname "$0")/../lib/common.sh"
need redis-server
[ $# -gt 0 ] || set -- redis_rs_get raw_get fetch_bytes cache_hit cache_hit_handler_layer
N="${N:-5000}" instructions_per_request tower-scale-cache hit_ir "$@"
[ -n "${PROFILE:-}" ] || exit 0
need callgrind_annotate:valgrind
bin="$(bench_bin tower-scale-cache hit_ir)"
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
for v in "$@"; do
  for n in 0 "${N:-5000}"; do
    BENCH_VARIANT="$v" BENCH_N="$n" valgrind --tool=callgrind --callgrind-out-file="$dir/$v.$n" \
      "$bin" >/dev/null 2>&1
  done
  python3 - "$dir/$v.0" "$dir/$v.${N:-5000}" "${N:-5000}" "$v" <<'PY'
import re, subprocess, sys

def own(path):
    out = subprocess.run(["callgrind_annotate", "--auto=no", "--threshold=100", path],
                         capture_output=True, text=True, check=True).stdout
    costs = {}
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+) \([^)]*\)\s+(?:\S*?\.(?:rs|c|S|h)|\?\?\?):(.+?)(?: \[.*\])?$",
                     line)
        if m and "PROGRAM TOTALS" not in line:
            costs[m.group(2)] = costs.get(m.group(2), 0) + int(m.group(1).replace(",", ""))
    return costs

base, full, n, variant = own(sys.argv[1]), own(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
per = {f: (full.get(f, 0) - base.get(f, 0)) / n for f in set(base) | set(full)}
alloc = re.compile(r"^(_int_malloc|_int_free|_int_realloc|malloc|free|realloc|unlink_chunk.*"
                   r"|malloc_consolidate|__rustc::__r(ust|dl)_(alloc|dealloc|realloc).*)$")
print(f"{variant}: the allocator {sum(c for f, c in per.items() if alloc.match(f)):.0f} "
      "instructions per request; the largest own costs:")
for f, c in sorted(per.items(), key=lambda fc: -abs(fc[1]))[:25]:
    print(f"  {c:7.0f}  {f[:150]}")
PY
done
