#!/usr/bin/env bash
# One benchmark, Envoy setups side by side under the same load, on loopback:
#   (a) Envoy with no filter (the floor),
#   (b) Envoy's native jwt_authn + local_ratelimit + rbac, the reference
#       policy as far as they can express it,
#   (c) Envoy with Palisade (the release .wasm) and envoy/demo-config.json,
# all answering from the same direct_response routes, each its own Envoy
# process, at --concurrency 1 and 2. Scenarios: RS256 and ES256 with a warm
# token and with a fresh token on every request, a denied request, and a
# rate-limited bulk route. On the bulk route, Palisade's fleet-wide mode
# against its local mode too: (g) the bulk rule with `global`, counted by
# palisade-rls (rls/) on a redis-server on loopback, against (c); (cw) and
# (gw) the same with budgets no run reaches (every page served). Details,
# and what (b) does not check, are written with the results.
#
#   bench/compare.sh [--seconds S] [--rounds R] [--quick] [--global]
#
# Defaults: 5 s per timed run, 3 rounds (about 15 minutes on 2 cores).
# --quick: 1 s x 1 round, results in a temp dir (a smoke test: every status
# check still runs). Otherwise writes bench/results/compare.md and .svg.
# --global: only (c), (g), (cw), (gw) on the bulk route (about 5 minutes),
# results in bench/results/global.md and .svg.
# ENVOY_BIN picks the Envoy binary (default: scripts/setup.sh's).
# BENCH_AUDIT='{"sample_allows": 0}' gives the Palisade setups that `audit`
# section (default: the demo config's, i.e. none), to measure what the audit
# trail costs.
set -euo pipefail
cd "$(dirname "$0")/.."

ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds|--rounds)
      [ $# -ge 2 ] && [[ "$2" =~ ^[1-9][0-9]*$ ]] || { echo "$1 needs a whole number" >&2; exit 2; }
      ARGS+=("$1" "$2"); shift 2 ;;
    --quick) ARGS+=(--quick); shift ;;
    --global) ARGS+=(--global); shift ;;
    -h|--help) sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (usage: bench/compare.sh [--seconds S] [--rounds R] [--quick] [--global])" >&2; exit 2 ;;
  esac
done

WORK=$(mktemp -d)
PIDS="$WORK/children.pids"
: >"$PIDS"
DRIVER=
RLS_BIN=rls/target/release/palisade-rls
REDIS_BIN=
cleanup() {
  # The driver stops what it started itself (and it all dies with it); this
  # catches any it could not, by PID, checking that the PID is still one of
  # its programs (Envoy, palisade-rls, redis-server).
  local exe k pid known=()
  if [ -n "$DRIVER" ]; then kill "$DRIVER" 2>/dev/null; wait "$DRIVER" 2>/dev/null || true; fi
  for exe in "${ENVOY_BIN:-}" "$RLS_BIN" "$REDIS_BIN"; do
    [ -n "$exe" ] && known+=("$(readlink -f "$exe" || true)")
  done
  while read -r pid; do
    exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || continue
    for k in "${known[@]}"; do
      if [ -n "$k" ] && [ "$exe" = "$k" ]; then kill "$pid" 2>/dev/null || true; fi
    done
  done <"$PIDS"
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The command line as run, for the results.
COMMAND="bench/compare.sh${ARGS[*]:+ ${ARGS[*]}}"
[ -n "${BENCH_AUDIT:-}" ] && COMMAND="BENCH_AUDIT='$BENCH_AUDIT' $COMMAND"
[ -n "${ENVOY_BIN:-}" ] && COMMAND="ENVOY_BIN=$ENVOY_BIN $COMMAND"

ENVOY_BIN=${ENVOY_BIN:-$(scripts/setup.sh | tail -1)}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
cargo build -q -p palisade-filter --target wasm32-wasip1 --release
# Release: the demo signs 2 x 10,000 tokens for the fresh-token pools.
cargo build -q -p palisade-demo --release
# The rate limit service of the global setups (its own workspace; the
# real-Envoy tests use the same release build) and Redis (Debian's, which
# scripts/setup.sh installs).
cargo build -q --release --manifest-path rls/Cargo.toml --locked
REDIS_BIN=$(command -v redis-server) || { echo "redis-server is missing (scripts/setup.sh installs it)" >&2; exit 1; }

python3 bench/compare.py \
  --envoy "$ENVOY_BIN" \
  --wasm target/wasm32-wasip1/release/palisade_filter.wasm \
  --demo target/release/palisade-demo \
  --rls "$RLS_BIN" \
  --redis-server "$REDIS_BIN" \
  --pidfile "$PIDS" \
  --command "$COMMAND" \
  "${ARGS[@]}" &
DRIVER=$!
status=0
wait "$DRIVER" || status=$?
DRIVER=
exit "$status"
