#!/usr/bin/env bash
# Runs every check and test: formatting, clippy on the host and on
# wasm32-wasip1, the .wasm build, validation of the shipped Envoy configs by
# Envoy itself, the rate limit service in rls/ (built before the tests:
# the fleet-wide real-Envoy tests run it), the native and real-Envoy test
# suites, rls/'s own tests against a real redis-server, the demo, and a short
# fuzz run of the core (fuzz/run.sh), and the side-by-side benchmark in its
# one-second smoke mode.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n\033[1;34m==> %s\033[0m\n' "$*"; }

step "setup"
ENVOY_BIN=$(scripts/setup.sh | tail -1)
export ENVOY_BIN

step "cargo fmt --check"
cargo fmt --all -- --check

step "clippy (host, all targets)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "clippy (wasm32-wasip1 filter)"
cargo clippy -p palisade-filter --target wasm32-wasip1 --locked -- -D warnings

step "build the filter (.wasm)"
cargo build -p palisade-filter --target wasm32-wasip1 --release --locked
ls -l target/wasm32-wasip1/release/palisade_filter.wasm

step "build the TEST-ONLY trapping filter (feature test-trap, its own profile)"
cargo build -p palisade-filter --target wasm32-wasip1 --profile test-trap --features test-trap --locked

step "Envoy validates the shipped sidecar config"
"$ENVOY_BIN" --mode validate -c envoy/sidecar.yaml -l error

step "Envoy validates the shipped fleet config (envoy/fleet.yaml: a sidecar with a fleet-wide budget)"
"$ENVOY_BIN" --mode validate -c envoy/fleet.yaml -l error

step "Envoy validates the shipped mTLS config (with fresh test certificates)"
envoy/mtls-certs.sh target/mtls-certs
"$ENVOY_BIN" --mode validate -c envoy/mtls.yaml -l error

step "palisade test policies/ (Rego unit tests of the reference policy)"
cargo run -q -p palisade-harness --locked -- test --coverage policies/

step "build the rate limit service (rls/, its own workspace; the fleet-wide tests run this binary)"
cargo build --release --manifest-path rls/Cargo.toml --locked
ls -l rls/target/release/palisade-rls

step "tests (unit, cases, harness, real Envoy)"
LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT
cargo test --workspace --locked 2>&1 | tee "$LOG"

step "rls/ (the rate limit service, its own workspace): fmt, clippy, tests against a real redis-server"
cargo fmt --manifest-path rls/Cargo.toml -- --check
cargo clippy --manifest-path rls/Cargo.toml --all-targets --locked -- -D warnings
# --release: reuses the build above rather than compiling it all again in debug.
cargo test --release --manifest-path rls/Cargo.toml --locked 2>&1 | tee -a "$LOG"

step "demo (real Envoy, shipped config)"
scripts/demo.sh

step "benchmark smoke test (bench/compare.sh --quick: every setup gives every scenario its expected statuses)"
bench/compare.sh --quick

step "fuzz (cargo-fuzz, 20 s per target, from fuzz/seeds)"
cargo fmt --manifest-path fuzz/Cargo.toml -- --check
fuzz/run.sh 20

# One closing line for the whole run (cargo prints one per test binary).
awk '/^test result:/ {p += $4; f += $6} END {printf "tests: %d passed, %d failed\n", p, f}' "$LOG"
