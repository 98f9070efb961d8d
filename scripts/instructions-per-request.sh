#!/bin/sh
# Instructions per request under callgrind: deterministic for the same binary and inputs,
# whatever else the machine runs (unlike wall time on a shared VM).
#
#   scripts/instructions-per-request.sh PACKAGE BENCH VARIANT...
#
# Builds the bench target BENCH of PACKAGE (harness = false), then runs it under callgrind for
# each VARIANT twice, with BENCH_VARIANT=<variant> and BENCH_N=0, then BENCH_N=$N (default
# 20000): the difference divided by N is one request, without start-up and warm-up. Prints one
# line per variant: the variant and its instructions per request. Run from the workspace root.
# COLLECT=<function>: the bench runs its N requests inside a function of that name; callgrind
# then counts inside it only (--toggle-collect), in one run per variant, divided by N (start-up
# work that varies between runs, such as a clock's calibration, is left out).
set -eu
[ $# -ge 3 ] || { echo "usage: $0 PACKAGE BENCH VARIANT..." >&2; exit 2; }
command -v valgrind >/dev/null 2>&1 || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 1; }
package=$1 bench=$2
shift 2
N=${N:-20000}
bin=$(cargo bench -p "$package" --bench "$bench" --no-run --message-format=json 2>/dev/null \
    | grep -o '"executable":"[^"]*'"$bench"'-[^"]*"' | tail -n 1 | cut -d'"' -f4)
[ -n "$bin" ] || { echo "could not build bench $bench of $package" >&2; exit 1; }
ir() {
    BENCH_VARIANT=$1 BENCH_N=$2 valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" 2>&1 \
        | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
if [ -n "${COLLECT:-}" ]; then
    for v in "$@"; do
        n=$(BENCH_VARIANT=$v BENCH_N=$N valgrind --tool=callgrind --callgrind-out-file=/dev/null \
            --toggle-collect="*::${COLLECT}*" "$bin" 2>&1 \
            | sed -n 's/.*Collected : \([0-9]*\).*/\1/p')
        echo "$v $(( n / N ))"
    done
    exit 0
fi
for v in "$@"; do
    base=$(ir "$v" 0)
    full=$(ir "$v" "$N")
    echo "$v $(( (full - base) / N ))"
done
