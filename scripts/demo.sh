#!/usr/bin/env bash
# The Palisade demo: builds the filter, starts real Envoy with the shipped
# sidecar config (envoy/sidecar.yaml) in front of the demo customer-data API,
# and tells the story of a few real requests. Stops everything on exit.
#
# Its last part, "Scaling out", adds two more sidecars with envoy/fleet.yaml,
# the rate limit service palisade-rls (rls/) and a redis-server, and shows one
# record budget held across the fleet.
#
# Ports, all on 127.0.0.1: 10000 (Envoy), 9901 (Envoy admin), 8080 (demo API);
# for scaling out 10011 and 10012 (sidecars A and B), 9911 and 9912 (their
# admin), 8081 (palisade-rls), 6380 (redis-server).
set -euo pipefail
cd "$(dirname "$0")/.."

ENVOY_BIN=${ENVOY_BIN:-$(scripts/setup.sh | tail -1)}
command -v redis-server >/dev/null || { echo "redis-server not found: run scripts/setup.sh (Debian package redis-server)" >&2; exit 1; }
WORK=$(mktemp -d)
PIDS=()
REDIS_PID=
cleanup() {
  for pid in "${PIDS[@]}" $REDIS_PID; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

bold() { printf '\033[1m%s\033[0m\n' "$*"; }
for port in 10000 9901 8080 10011 10012 9911 9912 8081 6380; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port on 127.0.0.1 is in use; stop whatever holds it and run the demo again" >&2
    exit 1
  fi
done

bold "Building the filter, the demo API and the rate limit service..."
cargo build -q -p palisade-filter --target wasm32-wasip1 --release
cargo build -q -p palisade-demo
# rls/ is its own Cargo workspace (rls/README.md).
cargo build -q --release --manifest-path rls/Cargo.toml --locked
DEMO=target/debug/palisade-demo
ls -l target/wasm32-wasip1/release/palisade_filter.wasm | awk '{printf "  palisade_filter.wasm: %.1f MiB\n", $5/1048576}'

"$DEMO" api --listen 127.0.0.1:8080 >"$WORK/api.log" 2>&1 &
PIDS+=($!)
"$ENVOY_BIN" -c envoy/sidecar.yaml --disable-hot-restart -l info --concurrency 2 2>"$WORK/envoy.log" &
PIDS+=($!)

# wait_ready ADMIN_PORT LOG: waits up to 30 s for an Envoy's /ready.
wait_ready() {
  for _ in $(seq 1 600); do
    curl -fs "127.0.0.1:$1/ready" >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  echo "Envoy (admin port $1) did not become ready:" >&2; tail -20 "$2" >&2; exit 1
}

# The last part's processes start now, so that Envoy compiling the filter
# for sidecars A and B overlaps the first part: Redis (no persistence),
# palisade-rls with envoy/rls-limits.json, and two sidecars with
# envoy/fleet.yaml (sidecar B is the same file on other ports).
REDIS_PORT=6380
start_redis() {
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$WORK" >>"$WORK/redis.log" 2>&1 &
  REDIS_PID=$!
  for _ in $(seq 1 200); do
    [ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ] && return 0
    sleep 0.05
  done
  echo "redis-server did not start:" >&2; tail -20 "$WORK/redis.log" >&2; exit 1
}
start_redis
rls/target/release/palisade-rls --config envoy/rls-limits.json --redis "redis://127.0.0.1:$REDIS_PORT" \
  --listen 127.0.0.1:8081 --redis-timeout-ms 50 2>"$WORK/rls.log" &
PIDS+=($!)
sed 's/port_value: 10011/port_value: 10012/; s/port_value: 9911/port_value: 9912/' envoy/fleet.yaml >"$WORK/fleet-b.yaml"
"$ENVOY_BIN" -c envoy/fleet.yaml --disable-hot-restart -l info --concurrency 2 2>"$WORK/envoy-a.log" &
PIDS+=($!)
"$ENVOY_BIN" -c "$WORK/fleet-b.yaml" --disable-hot-restart -l info --concurrency 2 2>"$WORK/envoy-b.log" &
PIDS+=($!)
wait_ready 9901 "$WORK/envoy.log"
bold "Envoy is up with Palisade in front of the customer API (http://127.0.0.1:10000)."
echo

token() { "$DEMO" token "$@"; }
b64url() { base64 -w0 | tr '+/' '-_' | tr -d '='; }

FAILED=0
# ask EXPECTED_STATUS "story line" curl-args...
# (EXPECTED_STATUS may list alternatives, 429/403, when either is right.)
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
  if [[ "/$expected/" != *"/$status/"* ]]; then mark='\033[31m✘ expected '"$expected"'\033[0m'; FAILED=1; fi
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

bold "Scaling out: two more sidecars, one record budget for the whole fleet"
echo "  Each Envoy process counts alone: data-export is suspended on the first sidecar"
echo "  (:10000), but a second replica's sidecar knows nothing of it. With 'global' on the"
echo "  rule (envoy/fleet.yaml), every sidecar also asks palisade-rls, whose counters are in Redis."
for _ in $(seq 1 200); do
  (exec 3<>/dev/tcp/127.0.0.1/8081) 2>/dev/null && break
  sleep 0.05
done
(exec 3<>/dev/tcp/127.0.0.1/8081) 2>/dev/null || { echo "palisade-rls did not start:" >&2; cat "$WORK/rls.log" >&2; exit 1; }
wait_ready 9911 "$WORK/envoy-a.log"
wait_ready 9912 "$WORK/envoy-b.log"
echo "  Up: sidecar A on :10011 and sidecar B on :10012 (envoy/fleet.yaml), palisade-rls on"
echo "  :8081 (envoy/rls-limits.json), redis-server on :$REDIS_PORT. Fleet-wide: 250 records per 5 minutes."
A=http://127.0.0.1:10011
B=http://127.0.0.1:10012
ask 403 "data-export on the first sidecar (:10000): suspended there" -H "authorization: Bearer $EXPORT" "$U/api/v1/customers?limit=100&offset=300"
ask 200 "  page 1 on sidecar A: records 0-99" -H "authorization: Bearer $EXPORT" "$A/api/v1/customers?limit=100"
ask 200 "  page 2 on sidecar B: records 100-199" -H "authorization: Bearer $EXPORT" "$B/api/v1/customers?limit=100&offset=100"
ask 200 "  page 3 on sidecar A: the fleet's budget ends inside it" -H "authorization: Bearer $EXPORT" "$A/api/v1/customers?limit=100&offset=200"
# A's suspension may already have reached the service (its tick is every
# second): either refusal is right here.
ask 429/403 "  page 4 on sidecar B: nothing left fleet-wide" -H "authorization: Bearer $EXPORT" "$B/api/v1/customers?limit=100&offset=300"
echo "  (Sidecar A sends the suspension from its root context on its next tick, within 1 s;"
echo "  until it arrives the spent budget refuses, as above. The demo waits 1.5 s for it.)"
# The suspension counter in Redis (under the identity's keyed hash) is what
# every sidecar checks: on a slow machine, wait up to 3.5 s more for it.
suspended_in_redis() {
  local key
  for key in $(redis-cli -p "$REDIS_PORT" --scan --pattern '*customer-bulk-suspension*,counter:*' 2>/dev/null); do
    [ "$(redis-cli -p "$REDIS_PORT" get "$key" 2>/dev/null)" -ge 1 ] 2>/dev/null && return 0
  done
  return 1
}
sleep 1.5
for _ in $(seq 1 70); do suspended_in_redis && break; sleep 0.05; done
ask 403 "  page 4 again on sidecar B: suspended fleet-wide" -H "authorization: Bearer $EXPORT" "$B/api/v1/customers?limit=100&offset=300"
ask 403 "  and on sidecar A" -H "authorization: Bearer $EXPORT" "$A/api/v1/customers?limit=100&offset=300"
ask 200 "meanwhile alice still reads her own record (sidecar B)" -H "authorization: Bearer $ALICE" "$B/api/v1/customers/42"
# What data-export got, per sidecar, from their audit records.
python3 - "$WORK/envoy-a.log" "$WORK/envoy-b.log" <<'EOF' || FAILED=1
import json, sys
got = []
for log in sys.argv[1:]:
    n = 0
    for line in open(log):
        if "palisade.audit " not in line:
            continue
        d = json.loads(line.split("palisade.audit ", 1)[1])
        if d.get("event") == "decision" and d.get("subject") == "data-export":
            n += d.get("records") or 0
    got.append(n)
print(f"  data-export got {got[0]} records through A + {got[1]} through B = {sum(got)}: the fleet's budget of 250.")
print(f"  Each sidecar alone allows 250, so without 'global' two would give 500 (and 50 replicas 12,500).")
if sum(got) != 250:
    print("  \033[31m✘ expected 250 in all\033[0m")
    sys.exit(1)
EOF
echo
bold "Redis goes down: the budgeted route fails closed (on_failure: deny)"
kill "$REDIS_PID"
wait "$REDIS_PID" 2>/dev/null || true
REDIS_PID=
ask 503 "alice reads her own record: personal data, the same rule" -H "authorization: Bearer $ALICE" "$B/api/v1/customers/42"
ask 503 "data-export asks sidecar A for a page" -H "authorization: Bearer $EXPORT" "$A/api/v1/customers?limit=100"
ask 200 "health check (no rule covers it)" "$A/health"
start_redis
ask 200 "Redis is back: alice reads her record, no Envoy restarted" -H "authorization: Bearer $ALICE" "$B/api/v1/customers/42"
echo "  (This demo's Redis keeps nothing on disk, so its restart also forgot data-export's"
echo "  fleet-wide budget and suspension; give Redis persistence where budgets must survive it.)"
echo "  Counted by sidecars A and B together (Envoy admin /stats):"
for port in 9911 9912; do
  curl -s "127.0.0.1:$port/stats?usedonly&filter=^wasmcustom\.palisade\.(fleet_refusals|rls_failures)\."
done | awk -F': ' '{sub(/^wasmcustom\./, "", $1); n[$1] += $2} END {for (k in n) printf "    %-46s %d\n", k, n[k]}' | sort
cp "$WORK/envoy-a.log" target/demo-envoy-a.log
cp "$WORK/envoy-b.log" target/demo-envoy-b.log
cp "$WORK/rls.log" target/demo-rls.log
echo "  Their logs: target/demo-envoy-a.log, target/demo-envoy-b.log, target/demo-rls.log"
echo
if [ "$FAILED" != 0 ]; then
  echo "Some answers were not what the demo expects." >&2
  exit 1
fi
bold "Demo finished; Envoy, the API, palisade-rls and Redis are stopped."
