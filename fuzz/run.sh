#!/usr/bin/env bash
# Fuzzes palisade-core: builds every cargo-fuzz target, then runs each for
# SECONDS_PER_TARGET seconds (default 30) from its committed seeds
# (fuzz/seeds/<target>/) plus a scratch corpus (fuzz/corpus/<target>/,
# git-ignored, kept between local runs). Exits non-zero if any target
# crashes, panics or times out, naming the input that did it.
#
#   fuzz/run.sh                 # 30 s per target
#   fuzz/run.sh 600 gate        # one target, 10 minutes
#
# Installs cargo-fuzz from crates.io if it is missing. Runs on the stable
# toolchain: `--sanitizer none` passes no -Z flag. The core forbids unsafe
# code, so AddressSanitizer would watch only dependencies, at a third of the
# speed; panics, overflow checks and debug assertions are what it finds.
# PALISADE_FUZZ_SANITIZER=address adds ASan anyway: that needs -Zsanitizer,
# so the script then sets RUSTC_BOOTSTRAP=1 and builds in target/asan.
set -euo pipefail
cd "$(dirname "$0")"

SECONDS_PER_TARGET=${1:-30}
shift || true
ALL_TARGETS=(canonical_path token_verify config_load policy_input gate)
if [ $# -gt 0 ]; then TARGETS=("$@"); else TARGETS=("${ALL_TARGETS[@]}"); fi
CARGO_FUZZ_VERSION=0.13.2

say() { printf '\033[1m[fuzz] %s\033[0m\n' "$*"; }

# Largest input per target: enough for every seed, small enough that one
# Rego evaluation or config compilation stays quick.
max_len() {
  case $1 in
    canonical_path) echo 512 ;;
    config_load) echo 16384 ;;
    *) echo 2048 ;;
  esac
}
dict() {
  case $1 in
    canonical_path) echo dicts/path.dict ;;
    token_verify | config_load) echo dicts/json.dict ;;
    *) echo dicts/request.dict ;;
  esac
}

export PATH="$HOME/.cargo/bin:$PATH"
if ! cargo fuzz --version >/dev/null 2>&1; then
  say "installing cargo-fuzz $CARGO_FUZZ_VERSION from crates.io"
  cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
fi

# 16 codegen units: a cold build takes about half as long on two cores as
# cargo-fuzz's default of one, for no measurable loss of executions/s.
FLAGS=(--sanitizer "${PALISADE_FUZZ_SANITIZER:-none}" --codegen-units 16)
if [ "${PALISADE_FUZZ_SANITIZER:-none}" != none ]; then
  export RUSTC_BOOTSTRAP=1
  FLAGS+=(--target-dir target/asan)
fi

say "building ${#ALL_TARGETS[@]} targets"
cargo fuzz build "${FLAGS[@]}"
# The shipped demo config, as it is now, seeds config_load.
mkdir -p corpus/config_load
cp ../envoy/demo-config.json corpus/config_load/envoy-demo-config.json

STAMP=$(mktemp)
trap 'rm -f "$STAMP"' EXIT
FAILED=()
for target in "${TARGETS[@]}"; do
  say "$target: ${SECONDS_PER_TARGET}s"
  mkdir -p "corpus/$target" "artifacts/$target"
  # New inputs go to the first corpus directory; the seeds are only read.
  # -timeout: one input taking 10 s is a finding (a hang), not slowness.
  # The grep drops libFuzzer's notes that no sanitizer runtime is linked.
  set +e
  cargo fuzz run "${FLAGS[@]}" "$target" "corpus/$target" "seeds/$target" -- \
    -max_total_time="$SECONDS_PER_TARGET" -max_len="$(max_len "$target")" \
    -dict="$(dict "$target")" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    2>&1 | grep --line-buffered -v 'Failed to find function "__sanitizer_'
  status=${PIPESTATUS[0]}
  set -e
  if [ "$status" -ne 0 ]; then
    FAILED+=("$target")
    say "$target FAILED (exit $status)"
  fi
done

if [ ${#FAILED[@]} -gt 0 ]; then
  say "crashes in: ${FAILED[*]}"
  while IFS= read -r artifact; do
    target=$(basename "$(dirname "$artifact")")
    say "artifact: fuzz/$artifact"
    echo "  hex: $(od -An -tx1 -v "$artifact" | tr -d ' \n' | head -c 400)"
    echo "  replay: (cd fuzz && PALISADE_FUZZ_DEBUG=1 cargo fuzz run ${FLAGS[*]} $target $artifact)"
  done < <(find artifacts -type f -newer "$STAMP" | sort)
  exit 1
fi
say "no crash in ${TARGETS[*]} (${SECONDS_PER_TARGET}s each)"
