#!/usr/bin/env bash
# Instructions per request under callgrind (valgrind), which other processes on a shared
# machine do not disturb: tower-scale-compression against plain tower-http, gzip 6 on 1 KB,
# 20 KB and 200 KB JSON, then brotli 4 on 200 KB (encoded on the pool by tower-scale; the pool
# threads are counted too).
#   crates/compression/benches/instructions.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/../../.." && pwd)"
cd "$root"
command -v valgrind >/dev/null 2>&1 || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 1; }
bin="$(cargo bench -p tower-scale-compression --bench instructions --no-run --message-format=json 2>/dev/null \
  | grep -o '"executable":"[^"]*instructions[^"]*"' | tail -1 | cut -d'"' -f4)"
ir() { valgrind --tool=callgrind --callgrind-out-file=/dev/null "$@" 2>&1 | sed -n 's/.*Collected : //p'; }
per_request() { # variant size n
  local a b
  a="$(ir "$bin" "$1" "$2" 0)"
  b="$(ir "$bin" "$1" "$2" "$3")"
  echo $(( (b - a) / $3 ))
}
printf '%-10s %8s %16s %16s %8s\n' encoding body tower_http tower_scale ratio
for case in "gzip 6 1024 40" "gzip 6 20000 40" "gzip 6 200000 10" "br 4 200000 10"; do
  set -- $case
  theirs="$(ENCODING=$1 LEVEL=$2 per_request tower_http "$3" "$4")"
  ours="$(ENCODING=$1 LEVEL=$2 per_request tower_scale "$3" "$4")"
  printf '%-10s %8s %16s %16s %8.3f\n' "$1 $2" "$3" "$theirs" "$ours" "$(echo "$ours / $theirs" | bc -l)"
done
