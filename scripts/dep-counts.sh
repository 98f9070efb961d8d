#!/usr/bin/env bash
# How many packages each published crate builds (itself included, normal dependencies only),
# with its default features and with none; `--peers` adds the peer crates the READMEs compare
# with, resolved in a scratch project (needs the crates.io index).
#   scripts/dep-counts.sh [--peers]
# The count of one feature set is
#   cargo tree -p CRATE [--no-default-features] -e normal --prefix none --no-dedupe -f '{p}' \
#     | sed 's/ (.*//' | sort -u | wc -l
set -euo pipefail
cd "$(dirname "$0")/.."

count() {
  cargo tree "$@" -e normal --prefix none --no-dedupe -f '{p}' --locked |
    sed 's/ (.*//' | sort -u | wc -l
}

echo "| crate | default features | no default features |"
echo "|---|---|---|"
for manifest in crates/*/Cargo.toml; do
  grep -q '^publish = false' "$manifest" && continue
  crate=$(sed -n 's/^name = "\(.*\)"/\1/p' "$manifest" | head -n 1)
  echo "| $crate | $(count -p "$crate") | $(count -p "$crate" --no-default-features) |"
done
for features in ratelimit session cache ratelimit,redis session,redis cache,redis; do
  echo "| tower-scale, features $features | $(count -p tower-scale --features "$features") | |"
done

[ "${1:-}" = "--peers" ] || exit 0
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
peer() {
  local name=$1
  shift
  mkdir -p "$scratch/$name/src"
  : >"$scratch/$name/src/lib.rs"
  printf '[package]\nname = "%s"\nversion = "0.0.0"\nedition = "2021"\n[workspace]\n[dependencies]\n' \
    "$name" >"$scratch/$name/Cargo.toml"
  printf '%s\n' "$@" >>"$scratch/$name/Cargo.toml"
  # The scratch package itself is not counted.
  echo "| $name (peer) | $(($(cd "$scratch/$name" && cargo tree -q -e normal --prefix none --no-dedupe -f '{p}' 2>/dev/null | sed 's/ (.*//' | sort -u | wc -l) - 1)) | |"
}
peer tower-governor-axum \
  'tower_governor = { version = "=0.8.0", default-features = false, features = ["axum"] }' \
  'axum = { version = "0.8", default-features = false }'
peer tower-sessions-memory 'tower-sessions = "=0.14.0"'
peer tower-sessions-redis 'tower-sessions = "=0.14.0"' 'tower-sessions-redis-store = "=0.16.0"'
peer tower-http-compression 'tower-http = { version = "0.7", features = ["compression-full"] }'
peer axum-prometheus 'axum-prometheus = "=0.10.1"'
