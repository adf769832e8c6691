#!/usr/bin/env bash
# Side-by-side throughput of Envoy without and with the Palisade filter, in one
# run: one Envoy (one worker), two listeners with the same direct_response
# route, the same valid RS256 token, wrk on the other core. Rounds alternate
# between the listeners to spread the machine's noise over both.
#
#   bench/throughput.sh [SECONDS_PER_ROUND] [ROUNDS]
# Writes bench/results/throughput.md.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
ROUNDS=${2:-3}
CONNS=16

ENVOY_BIN=${ENVOY_BIN:-$(scripts/setup.sh | tail -1)}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
cargo build -q -p palisade-filter --target wasm32-wasip1 --release
cargo build -q -p palisade-demo
WORK=$(mktemp -d)
trap 'kill $ENVOY_PID 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT

# BENCH_POLICY=path.rego swaps the reference policy (decision data.envoy.authz.allow).
# BENCH_AUDIT='{"sample_allows": 0}' sets the config's `audit` section (default: none).
CONFIG=$(BENCH_POLICY=${BENCH_POLICY:-policies/customer_data.rego} BENCH_AUDIT=${BENCH_AUDIT:-} python3 - <<'PY'
import json, os, pathlib
repo = pathlib.Path(".")
print(json.dumps({
  "providers": [{
    "name": "demo-idp", "issuer": "https://idp.palisade.test", "audiences": ["customer-api"],
    "algorithms": ["RS256", "ES256", "EdDSA"],
    "jwks": json.loads((repo / "envoy/test-keys/jwks.json").read_text()),
    "max_lifetime_seconds": 3600}],
  "policy": {"modules": {"policy.rego": pathlib.Path(os.environ["BENCH_POLICY"]).read_text()},
             "decision": "data.envoy.authz.allow"},
  **({"audit": json.loads(os.environ["BENCH_AUDIT"])} if os.environ["BENCH_AUDIT"] else {})}))
PY
)
python3 - "$WORK" "$CONFIG" "$PWD/target/wasm32-wasip1/release/palisade_filter.wasm" <<'PY'
import json, sys
work, config, wasm = sys.argv[1], sys.argv[2], sys.argv[3]
def listener(name, port, palisade):
    filters = []
    if palisade:
        filters.append({"name": "palisade", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {"name": "palisade", "root_id": "palisade", "failure_policy": "FAIL_CLOSED",
                "vm_config": {"vm_id": "palisade", "runtime": "envoy.wasm.runtime.v8",
                              "code": {"local": {"filename": wasm}}},
                "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": config}}}})
    filters.append({"name": "envoy.filters.http.router", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}})
    return {"name": name, "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": name,
            "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [{"match": {"prefix": "/"},
                "direct_response": {"status": 200, "body": {"inline_string": "{\"id\":\"42\"}"}}}]}]},
            "http_filters": filters}}]}]}
boot = {"admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 19901}}},
        "static_resources": {"listeners": [listener("plain", 18001, False), listener("palisade", 18002, True)]}}
open(f"{work}/bench.json", "w").write(json.dumps(boot))
PY
# Info-level wasm logs would write a decision line per request; the native
# chain logs nothing, so both run at warn.
"$ENVOY_BIN" -c "$WORK/bench.json" --disable-hot-restart --concurrency 1 -l warn 2>"$WORK/envoy.log" &
ENVOY_PID=$!
for _ in $(seq 1 200); do curl -fs 127.0.0.1:19901/ready >/dev/null 2>&1 && break; sleep 0.05; done
TOKEN=$(target/debug/palisade-demo token --ttl 3600 '{"sub":"alice","roles":["customer"],"customer_id":"42"}')
for port in 18001 18002; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "authorization: Bearer $TOKEN" 127.0.0.1:$port/api/v1/customers/42)
  [ "$code" = 200 ] || { echo "warm-up on $port answered $code" >&2; exit 1; }
done

run() { # port -> "rps p50 p99"
  wrk -t1 -c$CONNS -d${SECS}s --latency -H "authorization: Bearer $TOKEN" "http://127.0.0.1:$1/api/v1/customers/42" >"$WORK/wrk.txt"
  local rps p50 p99
  rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/wrk.txt")
  p50=$(awk '$1=="50%" {print $2}' "$WORK/wrk.txt")
  p99=$(awk '$1=="99%" {print $2}' "$WORK/wrk.txt")
  echo "$rps $p50 $p99"
}
declare -a PLAIN PAL
for r in $(seq 1 "$ROUNDS"); do
  PLAIN+=("$(run 18001)")
  PAL+=("$(run 18002)")
  echo "round $r: plain ${PLAIN[-1]} | palisade ${PAL[-1]}" >&2
done

{
  echo "# Envoy with and without Palisade: throughput"
  echo
  echo "- date: $(date -u +%Y-%m-%dT%H:%MZ); machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); Envoy $("$ENVOY_BIN" --version | grep -o "[0-9]*\.[0-9]*\.[0-9]*/Clean" | cut -d/ -f1) (V8), one worker"
  echo "- command: \`bench/throughput.sh $SECS $ROUNDS\` (wrk -t1 -c$CONNS, ${SECS}s per round, rounds alternate)"
  echo "- request: GET /api/v1/customers/42 with the same RS256 token (warm token cache), answered by a direct_response route"
  echo "- palisade: policy ${BENCH_POLICY:-policies/customer_data.rego}, enforce mode; the request is allowed"
  echo
  echo "| round | no filter req/s | p50 | p99 | Palisade req/s | p50 | p99 | ratio |"
  echo "|---|---|---|---|---|---|---|---|"
  for i in "${!PLAIN[@]}"; do
    read -r a1 a2 a3 <<<"${PLAIN[$i]}"; read -r b1 b2 b3 <<<"${PAL[$i]}"
    echo "| $((i+1)) | $a1 | $a2 | $a3 | $b1 | $b2 | $b3 | $(python3 -c "print(f'{$b1/$a1:.2f}')") |"
  done
  python3 - "${PLAIN[@]}" "${PAL[@]}" <<'PY'
import sys, statistics
vals = sys.argv[1:]; n = len(vals) // 2
a = [float(v.split()[0]) for v in vals[:n]]; b = [float(v.split()[0]) for v in vals[n:]]
print(f"\nMedian: {statistics.median(a):.0f} req/s without the filter, {statistics.median(b):.0f} req/s with it: ratio {statistics.median(b)/statistics.median(a):.2f}.")
PY
} > bench/results/throughput.md
cat bench/results/throughput.md
