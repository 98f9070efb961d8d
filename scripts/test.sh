#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine or a developer's one:
#   scripts/test.sh
# Installs what the tests need when it is missing (redis-server, redis-cli, nginx, PostgreSQL,
# Chromium and chromedriver, Node and npm from Debian's packages, using sudo when not root; a Rust
# toolchain through rustup when cargo is absent),
# then runs formatting, lint, doc and test checks of the whole workspace.
# Tests start their own redis-server processes on free loopback ports; nothing uses 6379.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else echo "need root (or sudo) to run: $*" >&2; exit 1
  fi
}

apt_updated=0
apt_install() {
  if [ "$apt_updated" -eq 0 ]; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    apt_updated=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}

need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)  # the scale-out test
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql)
command -v python3 >/dev/null 2>&1 || need+=(python3)  # the MSRV check
# The chat's browser tests (examples/chat/tests/browser) drive Debian's Chromium through its
# WebDriver, at these paths.
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -x /usr/bin/chromedriver ] || need+=(chromium-driver)
command -v node >/dev/null 2>&1 || need+=(nodejs)  # the HTTP caching conformance suite
command -v npm >/dev/null 2>&1 || need+=(npm)
# RedisServer::start_isolated: redis-server in a network namespace, packets dropped by iptables
command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || [ -x /sbin/ip ] || need+=(iproute2)
command -v iptables >/dev/null 2>&1 || [ -x /usr/sbin/iptables ] || need+=(iptables)
command -v wrk >/dev/null 2>&1 || need+=(wrk)  # the rolling-restart check
command -v promtool >/dev/null 2>&1 || need+=(prometheus)  # the alert rules' unit tests
for extra in ${TEST_EXTRA_PACKAGES:-}; do command -v "$extra" >/dev/null 2>&1 || need+=("$extra"); done
if [ "${#need[@]}" -gt 0 ]; then
  log "installing ${need[*]} from Debian's packages"
  apt_install "${need[@]}"
fi
# The Debian package starts a system redis on 6379; the tests never use it.

# rustc links with the system C compiler (`cc`), even when cargo itself is already present.
command -v cc >/dev/null 2>&1 || apt_install build-essential
if ! command -v cargo >/dev/null 2>&1; then
  log "installing a Rust toolchain with rustup"
  command -v curl >/dev/null 2>&1 || apt_install curl ca-certificates
  curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --component rustfmt,clippy
  # shellcheck disable=SC1091
  . "$HOME/.cargo/env"
fi
for component in rustfmt clippy; do
  if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1 && command -v rustup >/dev/null 2>&1; then
    rustup component add "$component"
  fi
done

# One cold build: incremental state would only take disk (3.4 GB of a cold run's 11 GB before the
# dev profile dropped full debug info). A developer who re-runs this often may set CARGO_INCREMENTAL=1.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
target_dir="${CARGO_TARGET_DIR:-target}"
mkdir -p "$target_dir"
log "free disk for $target_dir: $(df -h --output=avail "$target_dir" | tail -1 | tr -d ' ') (a cold build takes about 3 GB)"

log "promtool: the alert rules parse and their unit tests pass; the dashboard's queries parse"
promtool check rules docs/prometheus/alerts.yml
promtool test rules docs/prometheus/alerts_test.yml
dashboard_rules=$(mktemp --suffix=.yml)
scripts/lib/dashboard-rules.py docs/grafana/tower-scale.json >"$dashboard_rules"
promtool check rules "$dashboard_rules"  # every query of the Grafana dashboard parses
rm -f "$dashboard_rules"

log "cargo fmt --all --check"
cargo fmt --all --check

log "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

# A crate used with `default-features = false` (the in-memory cache, sessions without axum)
# must build, and its tests that need a feature declare it (`required-features`).
for manifest in crates/*/Cargo.toml; do
  grep -q '^\[features\]' "$manifest" || continue
  crate=$(sed -n 's/^name = "\(.*\)"/\1/p' "$manifest" | head -n 1)
  log "cargo clippy -p $crate --no-default-features --all-targets -- -D warnings"
  cargo clippy -p "$crate" --no-default-features --all-targets --locked -- -D warnings
done

log "every published crate ships its licence files and nothing that points outside the package"
for manifest in crates/*/Cargo.toml; do
  grep -q '^publish = false' "$manifest" && continue
  crate=$(sed -n 's/^name = "\(.*\)"/\1/p' "$manifest" | head -n 1)
  files=$(cargo package -p "$crate" --list --allow-dirty --locked 2>/dev/null)
  for licence in LICENSE-MIT LICENSE-APACHE; do
    grep -qx "$licence" <<<"$files" || { echo "$crate: $licence is not in the package" >&2; exit 1; }
  done
  scripts/lib/package-check.py "$(dirname "$manifest")" <<<"$files"
done

# In-memory users of the umbrella crate get no Redis client: every concern without `redis`.
log "tower-scale's in-memory feature set does not depend on the redis crate"
in_memory=ratelimit,session,cache,pubsub,metrics,offload,compression,shutdown,breaker,replica
redis_in_tree() {
  cargo tree -p tower-scale --features "$1" -e normal --prefix none -f '{p}' --locked |
    grep -cE '^(redis|tower-scale-redis) v' || true
}
[ "$(redis_in_tree "$in_memory")" -eq 0 ] || { echo "tower-scale --features $in_memory pulls the redis crate" >&2; exit 1; }
# ... while `redis` adds it (so the check above can fail).
[ "$(redis_in_tree "$in_memory,redis")" -gt 0 ] || { echo "tower-scale --features redis lacks the redis crate" >&2; exit 1; }
# Compression and offload need only tower-scale-metrics' lag probe, not axum and the exporter.
for crate in tower-scale-compression tower-scale-offload; do
  if cargo tree -p "$crate" --no-default-features -e normal --prefix none -f '{p}' --locked |
    grep -E '^(axum|metrics-exporter-prometheus) v'; then
    echo "$crate (no default features) builds axum or the Prometheus exporter" >&2
    exit 1
  fi
done

# The minimal feature sets stay at or below their closest peers' (see scripts/dep-counts.sh;
# compression: tower-http's gzip and deflate, itself and tower-scale-core, against tower-http's
# `compression-full` 31).
for limit in tower-scale-session:66 tower-scale-compression:26; do
  crate=${limit%:*} max=${limit#*:}
  n=$(cargo tree -p "$crate" --no-default-features -e normal --prefix none --no-dedupe -f '{p}' --locked |
    sed 's/ (.*//' | sort -u | wc -l)
  [ "$n" -le "$max" ] || { echo "$crate (no default features) builds $n packages, more than $max" >&2; exit 1; }
done

# Compression with fewer algorithms than the default: gzip and deflate alone (the minimal set),
# and with brotli or zstd alone on the pool and request-decompression paths.
for features in "" br,pool,decompression,config zstd,pool,decompression,config; do
  log "cargo test -p tower-scale-compression --no-default-features --features '$features' --test algorithms"
  cargo test -p tower-scale-compression --no-default-features --features "$features" --test algorithms --locked
done
for features in br zstd; do
  log "cargo clippy -p tower-scale-compression --no-default-features --features $features --all-targets -- -D warnings"
  cargo clippy -p tower-scale-compression --no-default-features --features "$features" --all-targets --locked -- -D warnings
done

log "every package's rust-version covers what its dependencies in Cargo.lock need"
cargo metadata --format-version 1 --locked | scripts/lib/msrv-check.py

log "cargo doc --workspace --no-deps (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked

log "cargo test --workspace"
cargo test --workspace --locked

# The public HTTP caching suite (cache-tests.fyi) through examples/cache-proxy, memory and Redis
# stores (about 3 minutes); fails on a required test beyond the documented harness artifacts.
log "scripts/cache-conformance.sh"
scripts/cache-conformance.sh
# Rolling restarts behind nginx with a static upstream, POSTs at full load: none may be lost.
# Uses the bench app that `cargo test` built (debug); about 1.5 minutes.
log "rolling restarts behind a static nginx upstream lose no POST"
CHECK=1 BENCH_APP="$target_dir/debug/example-bench-app" scripts/bench/shutdown-static-upstream.sh

log "all checks passed"
