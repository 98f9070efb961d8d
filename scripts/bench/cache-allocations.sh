#!/usr/bin/env bash
# Heap allocations per `GET /cached/{id}` hit of crates/cache/benches/hit_ir.rs, by the code
# that asked for them, counted exactly under callgrind.
#
#   scripts/bench/cache-allocations.sh [VARIANT]     # cache_hit (default), or any variant of
#                                                    # scripts/bench/cache-instructions.sh
#
# Runs the bench under callgrind with BENCH_N=0 and BENCH_N=$N, each `malloc`/`realloc` call
# recorded with 16 frames of callers (--separate-callers16), and prints the difference divided
# by N: the total per request, then per first caller outside the allocator and collection code
# (inlining moves some to their caller's caller). Environment: N (1000). Needs valgrind,
# python3 and redis-server.
set -euo pipefail
. "$(dirname "$0")/../lib/common.sh"
need valgrind python3 redis-server
variant=${1:-cache_hit}
N=${N:-1000}
bin="$(bench_bin tower-scale-cache hit_ir)"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
for n in 0 "$N"; do
    BENCH_VARIANT=$variant BENCH_N=$n valgrind --tool=callgrind --separate-callers16=malloc \
        --separate-callers16=realloc --callgrind-out-file="$dir/$n.out" "$bin" >/dev/null 2>&1
done
python3 - "$dir/0.out" "$dir/$N.out" "$N" <<'PY'
import collections, re, sys

# Frames skipped to find who asked: the allocator, Box/Arc/Vec/String and collection code.
SKIP = re.compile(
    r"__rdl_|__rust_|alloc::alloc|RawVec|raw_vec|finish_grow|reserve|with_capacity|"
    r"exchange_malloc|box_new|grow_one|grow_amortized|alloc::vec::|to_vec|core::ptr|alloc_impl|"
    r"Arc<T>::new|Arc<.*>::(allocate|try_allocate|copy_from)|Box<T>::new|<alloc::|Vec<T,A>|"
    r"allocate_in|SpecFrom|spec_extend|from_iter|alloc::string|alloc::slice|alloc::str|"
    r"^malloc$|^realloc$|extend_from_slice|extend_trusted|alloc::collections|collect|try_process")


def calls(path):
    names, counts, callee = {}, collections.Counter(), None

    def name(token):
        m = re.match(r"\((\d+)\)(?: (.*))?", token)
        if not m:
            return token
        if m.group(2):
            names[m.group(1)] = m.group(2)
        return names.get(m.group(1), "?")

    for line in open(path, errors="replace"):
        if line.startswith("fn="):
            name(line[3:].strip())
            callee = None
        elif line.startswith("cfn="):
            callee = name(line[4:].strip())
        elif line.startswith("calls=") and callee is not None:
            chain = [re.sub(r"::h[0-9a-f]{16}", "", c) for c in callee.split("'")]
            if chain[0] in ("malloc", "realloc"):
                asker = next((c for c in chain[1:] if not SKIP.search(c)), "?")
                counts[(chain[0], asker)] += int(line[6:].split()[0])
            callee = None
    return counts


before, after, n = calls(sys.argv[1]), calls(sys.argv[2]), int(sys.argv[3])
diff = {k: (after[k] - before[k]) / n for k in set(before) | set(after)}
for fn in ("malloc", "realloc"):
    print(f"{fn} per request: {sum(v for (f, _), v in diff.items() if f == fn):.2f}")
for (fn, asker), v in sorted(diff.items(), key=lambda kv: -kv[1]):
    if abs(v) >= 0.05:
        print(f"{v:6.2f} {fn:7} {asker[:150]}")
PY
