#!/usr/bin/env bash
# One benchmark, three Envoy setups under the same load, on loopback:
#   (a) Envoy with no filter (the floor),
#   (b) Envoy's native jwt_authn + local_ratelimit + rbac, the reference
#       policy as far as they can express it,
#   (c) Envoy with Palisade (the release .wasm) and envoy/demo-config.json,
# all answering from the same direct_response routes, each its own Envoy
# process, at --concurrency 1 and 2. Scenarios: RS256 and ES256 with a warm
# token and with a fresh token on every request, a denied request, and a
# rate-limited bulk route. Details, and what (b) does not check, are written
# with the results.
#
#   bench/compare.sh [--seconds S] [--rounds R] [--quick]
#
# Defaults: 5 s per timed run, 3 rounds (about 11 minutes on 2 cores).
# --quick: 1 s x 1 round, results in a temp dir (a smoke test: every status
# check still runs). Otherwise writes bench/results/compare.md and .svg.
# ENVOY_BIN picks the Envoy binary (default: scripts/setup.sh's).
# BENCH_AUDIT='{"sample_allows": 0}' gives (c) that `audit` section (default:
# the demo config's, i.e. none), to measure what the audit trail costs.
set -euo pipefail
cd "$(dirname "$0")/.."

ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds|--rounds)
      [ $# -ge 2 ] && [[ "$2" =~ ^[1-9][0-9]*$ ]] || { echo "$1 needs a whole number" >&2; exit 2; }
      ARGS+=("$1" "$2"); shift 2 ;;
    --quick) ARGS+=(--quick); shift ;;
    -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (usage: bench/compare.sh [--seconds S] [--rounds R] [--quick])" >&2; exit 2 ;;
  esac
done

WORK=$(mktemp -d)
PIDS="$WORK/envoy.pids"
: >"$PIDS"
DRIVER=
cleanup() {
  # The driver stops its Envoys itself (and they die with it); this catches
  # any it could not, by PID, checking that the PID is still an Envoy.
  local envoy pid
  if [ -n "$DRIVER" ]; then kill "$DRIVER" 2>/dev/null; wait "$DRIVER" 2>/dev/null || true; fi
  envoy=$(readlink -f "${ENVOY_BIN:-/nonexistent}" || true)
  while read -r pid; do
    [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$envoy" ] && kill "$pid" 2>/dev/null || true
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

python3 bench/compare.py \
  --envoy "$ENVOY_BIN" \
  --wasm target/wasm32-wasip1/release/palisade_filter.wasm \
  --demo target/release/palisade-demo \
  --pidfile "$PIDS" \
  --command "$COMMAND" \
  "${ARGS[@]}" &
DRIVER=$!
status=0
wait "$DRIVER" || status=$?
DRIVER=
exit "$status"
