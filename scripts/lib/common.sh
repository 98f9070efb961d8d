# shellcheck shell=bash
# Helpers shared by the scripts under scripts/bench/ (and scripts/scale-out.sh); sourced, not run:
#   . "$(dirname "$0")/../lib/common.sh"
# Sets ROOT (the repository root) and SCRIPT (the calling script's name, for messages).

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SCRIPT="$(basename "$0")"

# Prints a message on stderr and exits with status 2 (bad input or a missing dependency).
die() { echo "$SCRIPT: $*" >&2; exit 2; }

# Exits with a clear message unless every named command is on PATH.
# Each argument is `command` or `command:debian-package`.
need() {
  local spec missing=()
  for spec in "$@"; do
    command -v "${spec%%:*}" >/dev/null 2>&1 || missing+=("${spec#*:}")
  done
  [ "${#missing[@]}" -eq 0 ] || die "needs ${missing[*]} (Debian: apt-get install ${missing[*]})"
}

# Like `need`, but installs the missing Debian packages (as root, or through sudo).
install_missing() {
  local spec missing=()
  for spec in "$@"; do
    command -v "${spec%%:*}" >/dev/null 2>&1 || missing+=("${spec#*:}")
  done
  [ "${#missing[@]}" -gt 0 ] || return 0
  echo "$SCRIPT: installing ${missing[*]} from Debian's packages" >&2
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "needs root (or sudo) to install ${missing[*]}"
    sudo=(sudo)
  fi
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# Resolves SHARED_DIR, the shared folder holding bench/ (SCENARIOS.md, the wrk scripts, the
# JSON document) and peers/: by default `shared` next to the repository root.
shared_dir() {
  SHARED_DIR="${SHARED_DIR:-$ROOT/../shared}"
  [ -d "$SHARED_DIR/bench" ] ||
    die "no bench/ folder in SHARED_DIR=$SHARED_DIR: set SHARED_DIR to the shared folder (the one holding bench/SCENARIOS.md)"
  SHARED_DIR="$(cd "$SHARED_DIR" && pwd)"
}

# Prints a free TCP port on 127.0.0.1.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Builds the bench target BENCH of PACKAGE (bench profile) and prints its executable's path.
bench_bin() { # package bench
  local bin
  bin="$(cd "$ROOT" && cargo bench -p "$1" --bench "$2" --no-run --quiet --message-format=json-render-diagnostics |
    python3 -c '
import json, sys
name, exe = sys.argv[1], ""
for line in sys.stdin:
    try:
        msg = json.loads(line)
    except ValueError:
        continue
    if msg.get("reason") == "compiler-artifact" and msg["target"]["name"] == name and msg.get("executable"):
        exe = msg["executable"]
print(exe)' "$2")"
  [ -x "$bin" ] || die "could not build bench $2 of $1"
  echo "$bin"
}

# Runs a command under callgrind (nothing written to disk) and prints the instructions it
# executed. With COLLECT_IN set to a function pattern, counts only inside that function.
callgrind_count() { # command...
  local toggle=()
  [ -z "${COLLECT_IN:-}" ] || toggle=("--toggle-collect=$COLLECT_IN")
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "${toggle[@]}" "$@" 2>&1 |
    sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}

# Instructions per request of a callgrind bench (a `harness = false` target that serves
# $N_VAR requests of the variant named in $VARIANT_VAR): prints `<variant> <instructions>`
# per VARIANT. With COLLECT=<function> the bench runs its requests inside that function and
# callgrind counts there only, divided by N; without it, the run with N=0 is subtracted from
# the run with N requests, divided by N (start-up and warm-up drop out either way).
# BEFORE_EACH, when set, names a command run before each callgrind run (e.g. a Redis flush).
instructions_per_request() { # package bench variant...
  local package=$1 bench=$2 bin v n base full
  shift 2
  [ $# -gt 0 ] || die "no variant given"
  need valgrind python3
  case "${N:=20000}" in '' | *[!0-9]* | 0) die "N must be a positive integer" ;; esac
  bin="$(bench_bin "$package" "$bench")"
  local vvar="${VARIANT_VAR:-BENCH_VARIANT}" nvar="${N_VAR:-BENCH_N}"
  for v in "$@"; do
    if [ -n "${COLLECT:-}" ]; then
      [ -z "${BEFORE_EACH:-}" ] || $BEFORE_EACH
      n="$(export "$vvar=$v" "$nvar=$N" COLLECT_IN="*${bench}::${COLLECT}*"; callgrind_count "$bin")"
    else
      [ -z "${BEFORE_EACH:-}" ] || $BEFORE_EACH
      base="$(export "$vvar=$v" "$nvar=0"; callgrind_count "$bin")"
      [ -z "${BEFORE_EACH:-}" ] || $BEFORE_EACH
      full="$(export "$vvar=$v" "$nvar=$N"; callgrind_count "$bin")"
      n=$((full - base))
    fi
    [ -n "$n" ] || die "callgrind counted nothing for $v"
    echo "$v $((n / N))"
  done
}

# Starts a redis-server on a free loopback port, without persistence, and waits until it
# answers: sets REDIS_PORT, REDIS_PID and REDIS_URL. `stop_redis` ends it (call it from the
# script's EXIT trap); `flush_redis` empties it.
start_redis() {
  need redis-server redis-cli:redis-tools python3
  REDIS_PORT="$(free_port)"
  REDIS_DIR="$(mktemp -d)"
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$REDIS_DIR" \
    --daemonize no --loglevel warning >"$REDIS_DIR/redis.log" 2>&1 &
  REDIS_PID=$!
  # shellcheck disable=SC2034 # for the calling script
  REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
  for _ in $(seq 100); do
    redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && return 0
    kill -0 "$REDIS_PID" 2>/dev/null || break
    sleep 0.1
  done
  die "redis-server did not start: $(tail -3 "$REDIS_DIR/redis.log")"
}
stop_redis() {
  if [ -n "${REDIS_PID:-}" ]; then
    kill "$REDIS_PID" 2>/dev/null || true
    wait "$REDIS_PID" 2>/dev/null || true
    REDIS_PID=""
  fi
  if [ -n "${REDIS_DIR:-}" ]; then rm -rf "$REDIS_DIR"; REDIS_DIR=""; fi
}
# Redis's CPU time so far, in µs (INFO cpu: used_cpu_user + used_cpu_sys).
redis_cpu_us() { # port
  redis-cli -p "$1" info cpu | tr -d '\r' |
    awk -F: '$1 == "used_cpu_user" || $1 == "used_cpu_sys" { t += $2 } END { printf "%.0f", t * 1e6 }'
}
# Commands since the last CONFIG RESETSTAT (INFO commandstats), without the scripts' own
# (INFO, CONFIG, FLUSHALL) nor the names in the optional second argument ("|cluster|ping").
redis_commands() { # port [more names to leave out, each after a |]
  redis-cli -p "$1" info commandstats | tr -d '\r' |
    awk -F'[:,=]' -v skip="^cmdstat_(info|config|flushall${2:-})\$" \
      '/^cmdstat_/ && $1 !~ skip { n += $3 } END { print n + 0 }'
}
flush_redis() { redis-cli -p "$REDIS_PORT" flushall >/dev/null; }

# Builds the Rust peer of $SHARED_DIR/peers/rust-tower (release, --locked) into
# RUST_PEER_TARGET_DIR and sets RUST_PEER to its binary.
build_rust_peer() {
  echo "building the Rust peer (release, --locked) into $RUST_PEER_TARGET_DIR" >&2
  (cd "$SHARED_DIR/peers/rust-tower" && CARGO_TARGET_DIR="$RUST_PEER_TARGET_DIR" cargo build --release --locked --quiet)
  RUST_PEER="$RUST_PEER_TARGET_DIR/release/rust-tower-peer"
}

# Installs the Node peer's locked dependencies (npm ci) into NODE_PEER_DEPS_DIR, again only when
# the peer's package-lock.json changed (shared/ is read-only, so they live outside it).
install_node_peer() {
  local node_dir="$SHARED_DIR/peers/node-express"
  mkdir -p "$NODE_PEER_DEPS_DIR"
  if [ ! -f "$NODE_PEER_DEPS_DIR/node_modules/.package-lock.json" ] ||
     ! cmp -s "$node_dir/package-lock.json" "$NODE_PEER_DEPS_DIR/package-lock.json"; then
    echo "installing the Node peer's locked dependencies (npm ci) into $NODE_PEER_DEPS_DIR" >&2
    cp "$node_dir/package.json" "$node_dir/package-lock.json" "$NODE_PEER_DEPS_DIR/"
    (cd "$NODE_PEER_DEPS_DIR" && npm ci --no-audit --no-fund --loglevel=error)
  fi
}
