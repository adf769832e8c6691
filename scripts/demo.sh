#!/usr/bin/env bash
# The Palisade demo: builds the filter, starts real Envoy with the shipped
# sidecar config (envoy/sidecar.yaml) in front of the demo customer-data API,
# and tells the story of a few real requests. Stops everything on exit.
#
# Ports: 10000 (Envoy), 9901 (Envoy admin), 8080 (demo API), all on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

ENVOY_BIN=${ENVOY_BIN:-$(scripts/setup.sh | tail -1)}
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

bold() { printf '\033[1m%s\033[0m\n' "$*"; }
for port in 10000 9901 8080; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port on 127.0.0.1 is in use; stop whatever holds it and run the demo again" >&2
    exit 1
  fi
done

bold "Building the filter and the demo API..."
cargo build -q -p palisade-filter --target wasm32-wasip1 --release
cargo build -q -p palisade-demo
DEMO=target/debug/palisade-demo
ls -l target/wasm32-wasip1/release/palisade_filter.wasm | awk '{printf "  palisade_filter.wasm: %.1f MiB\n", $5/1048576}'

"$DEMO" api --listen 127.0.0.1:8080 >"$WORK/api.log" 2>&1 &
PIDS+=($!)
"$ENVOY_BIN" -c envoy/sidecar.yaml --disable-hot-restart -l info --concurrency 2 2>"$WORK/envoy.log" &
PIDS+=($!)
for _ in $(seq 1 200); do
  curl -fs 127.0.0.1:9901/ready >/dev/null 2>&1 && break
  sleep 0.05
done
curl -fs 127.0.0.1:9901/ready >/dev/null || { echo "Envoy did not become ready:" >&2; tail -20 "$WORK/envoy.log" >&2; exit 1; }
bold "Envoy is up with Palisade in front of the customer API (http://127.0.0.1:10000)."
echo

token() { "$DEMO" token "$@"; }
b64url() { base64 -w0 | tr '+/' '-_' | tr -d '='; }

FAILED=0
# ask EXPECTED_STATUS "story line" curl-args...
ask() {
  local expected=$1 story=$2; shift 2
  local before after status body reason
  before=$(curl -s 127.0.0.1:8080/__demo/hits | sed -E 's/.*"total":([0-9]+).*/\1/')
  body=$(curl -s -o "$WORK/body" -w '%{http_code}' "$@") || true
  status=$body
  after=$(curl -s 127.0.0.1:8080/__demo/hits | sed -E 's/.*"total":([0-9]+).*/\1/')
  reason=$(sed -nE 's/.*"reason":"([a-z_]+)".*/\1/p' "$WORK/body")
  local records; records=$( { grep -o '"email"' "$WORK/body" || true; } | wc -l)
  if [ "$records" -gt 1 ]; then reason="$records records"; fi
  local reached="reached the API"; [ "$before" = "$after" ] && reached="never reached the API"
  local mark='\033[32m✔\033[0m'
  if [ "$status" != "$expected" ]; then mark='\033[31m✘ expected '"$expected"'\033[0m'; FAILED=1; fi
  printf '%-62s → %s %s (%s) %b\n' "$story" "$status" "${reason:-}" "$reached" "$mark"
}

ALICE=$(token '{"sub":"alice","roles":["customer"],"customer_id":"42"}')
SAM=$(token --alg ES256 --key envoy/test-keys/es256.key.pem --kid test-es256 \
  '{"sub":"sam","roles":["support"],"ticket":{"id":"T-1001","customer_id":"7"}}')
EXPORT=$(token --alg EdDSA --key envoy/test-keys/eddsa.key.pem --kid test-eddsa \
  '{"sub":"data-export","scope":"customers:export"}')
ROOT=$(token '{"sub":"root","roles":["admin"]}')
DANA=$(token '{"sub":"dana","roles":["data_steward"],"amr":["pwd"],"auth_time":"now-30"}')
DANA_MFA=$(token '{"sub":"dana","roles":["data_steward"],"amr":["pwd","mfa"],"auth_time":"now-30"}')
FORGED=$(token --key envoy/test-keys/attacker-rs256.key.pem '{"sub":"alice","roles":["customer"],"customer_id":"42"}')
EXPIRED=$(token --ttl 0 '{"sub":"alice","roles":["customer"],"customer_id":"42","iat":1700000000,"exp":1700000600}')
NOW=$(date +%s)
NONE="$(printf '{"alg":"none","typ":"JWT"}' | b64url).$(printf '{"iss":"https://idp.palisade.test","aud":"customer-api","sub":"root","roles":["admin"],"exp":%d}' $((NOW+300)) | b64url)."

U=http://127.0.0.1:10000
bold "Allowed"
ask 200 "health check, no token (public route)" $U/health
ask 200 "alice (customer 42) reads her own record" -H "authorization: Bearer $ALICE" $U/api/v1/customers/42
ask 200 "sam (support, ticket T-1001 for customer 7) reads customer 7" -H "authorization: Bearer $SAM" $U/api/v1/customers/7
ask 200 "data-export service lists 100 customers (EdDSA token)" -H "authorization: Bearer $EXPORT" "$U/api/v1/customers?limit=100"
echo
bold "Refused by authentication (401, the policy never runs)"
ask 401 "alice's claims signed by an attacker's key, same kid" -H "authorization: Bearer $FORGED" $U/api/v1/customers/42
ask 401 "an expired token" -H "authorization: Bearer $EXPIRED" $U/api/v1/customers/42
ask 401 "an unsigned token with alg none claiming admin" -H "authorization: Bearer $NONE" $U/api/v1/customers
ask 401 "no token at all on a customer record" $U/api/v1/customers/42
echo
bold "Privileged: the bulk export needs fresh MFA (401 step-up challenge, RFC 9470)"
ask 401 "dana (data steward, password only) starts the bulk export" -H "authorization: Bearer $DANA" "$U/api/v1/exports/customers?limit=20"
curl -s -o /dev/null -D - -H "authorization: Bearer $DANA" "$U/api/v1/exports/customers?limit=20" | grep -i '^www-authenticate' | sed 's/^/    /'
ask 200 "dana, after MFA a moment ago, exports 20 customers (NDJSON)" -H "authorization: Bearer $DANA_MFA" "$U/api/v1/exports/customers?limit=20"
echo
bold "Refused by least-privilege policy (403)"
ask 403 "alice reads someone else's record" -H "authorization: Bearer $ALICE" $U/api/v1/customers/43
ask 403 "alice tries a bulk listing" -H "authorization: Bearer $ALICE" "$U/api/v1/customers?limit=100"
ask 403 "sam reads a customer his ticket does not name" -H "authorization: Bearer $SAM" $U/api/v1/customers/42
ask 403 "root (admin) tries a bulk listing" -H "authorization: Bearer $ROOT" "$U/api/v1/customers?limit=100"
echo
bold "Refused as unreadable (400): a request that the policy and the API could read differently"
ask 400 "alice reaches for 43 through a double-encoded ../" --path-as-is -H "authorization: Bearer $ALICE" "$U/api/v1/customers/42/%252e%252e/43"
echo
bold "Stopped by the record budget (250 customer records per 5 minutes for data-export)"
ask 400 "data-export asks for 100000 records in one page" -H "authorization: Bearer $EXPORT" "$U/api/v1/customers?limit=100000"
ask 200 "data-export pages on: records 100-199" -H "authorization: Bearer $EXPORT" "$U/api/v1/customers?limit=100&offset=100"
ask 200 "data-export pages on: the budget ends inside this page" -H "authorization: Bearer $EXPORT" "$U/api/v1/customers?limit=100&offset=200"
ask 403 "data-export pages on: suspended for spending its budget" -H "authorization: Bearer $EXPORT" "$U/api/v1/customers?limit=100&offset=300"
ask 200 "meanwhile alice still reads her own record" -H "authorization: Bearer $ALICE" $U/api/v1/customers/42
echo
bold "Audit trail (Envoy log: one hash-chained JSON record per request; tokens never written):"
sleep 1
grep -o 'palisade.audit .*' "$WORK/envoy.log" | grep '"event":"decision"' | tail -6 | python3 -c '
import json, sys
for line in sys.stdin:
    d = json.loads(line.split(" ", 1)[1])
    records = "" if d.get("records") is None else " records={}{}".format(d["records"], " (truncated)" if d.get("truncated") else "")
    print("  chain {chain_id} #{seq:<3} {decision:5} {reason:20} {subject} {method} {request_path} -> {http_status}".format(**d) + records)
'
cp "$WORK/envoy.log" target/demo-envoy.log
echo "  The Envoy log is kept in target/demo-envoy.log; check its chains with"
echo "    cargo run -q -p palisade-harness -- audit verify target/demo-envoy.log"
echo
if [ "$FAILED" != 0 ]; then
  echo "Some answers were not what the demo expects." >&2
  exit 1
fi
bold "Demo finished; Envoy and the API are stopped."
