#!/usr/bin/env python3
"""Envoy alone, Envoy's native JWT + RBAC + local rate limit chain, and
Envoy with Palisade, under the same load: the driver behind bench/compare.sh.

Python 3.11 standard library only. bench/compare.sh builds what this needs
and passes the paths; run that, not this file. See the module's `--help`.

Three setups, each its own Envoy process (own ports, own admin port), all
answering from the same `direct_response` routes:

  a  no filter: the floor
  b  envoy.filters.http.jwt_authn + local_ratelimit + rbac: the reference
     policy as far as Envoy's native filters can say it (see NOT_IN_B)
  c  Palisade (the release .wasm, V8) with envoy/demo-config.json

and, for the bulk route only, Palisade's fleet-wide mode against the same
rule kept local (issue 10), each its own Envoy process too:

  g   c's configuration with `global` on the `customer-bulk` rule: the rule's
      limits also counted by palisade-rls (the bundled rate limit service,
      gRPC) on a redis-server, both on loopback, the service given the same
      limits as the rule (the rate-limited bulk scenario, as c runs it)
  cw  c's configuration with `customer-bulk`'s budgets raised so that no
      request of the run is refused: every page is served, counted locally
  gw  cw with `global`, the service given the raised budgets: every page is
      checked with the service before it is forwarded and its records are
      charged to it before its last byte goes out

One redis-server and one palisade-rls per global setup serve the whole run;
Redis is emptied (FLUSHALL) at the start of every round, so each round
starts from unspent fleet budgets as the fresh Envoys do.

Each round starts fresh processes for all three (so each round's rate-limit
scenario starts from an unspent budget, and each round samples start-to-ready),
warms each up for two seconds (RS256, warm token), then runs every scenario against every setup,
the setups in an order that rotates with the round and the scenario. Every
timed run is preceded by a curl that must get the scenario's status from
every setup, and followed by a check of the status mix the wrk script counted.
"""

from __future__ import annotations

import argparse
import base64
import ctypes
import datetime
import html
import json
import os
import pathlib
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

REPO = pathlib.Path(__file__).resolve().parent.parent
LUA = REPO / "bench" / "lua" / "compare.lua"
TOKEN_DIR = REPO / "target" / "bench-tokens"

SETUPS = ["a", "b", "c", "g", "cw", "gw"]
SETUP_NAMES = {
    "a": "Envoy, no filter",
    "b": "Envoy native: jwt_authn + local_ratelimit + rbac",
    "c": "Envoy + Palisade (.wasm, V8)",
    "g": "Palisade, customer-bulk global (palisade-rls + Redis)",
    "cw": "Palisade, customer-bulk budgets raised, local",
    "gw": "Palisade, customer-bulk budgets raised, global",
}
COLOURS = {"a": "#9e9e9e", "b": "#3b78c2", "c": "#e8833a", "g": "#c0392b", "cw": "#f5b041", "gw": "#8e44ad"}
PALISADE = {"c", "g", "cw", "gw"}
# A global setup -> the setup running the same rule locally, and the Redis
# database its palisade-rls keeps its counters in (one redis-server).
GLOBAL_TWIN = {"g": "c", "gw": "cw"}
REDIS_DB = {"g": 0, "gw": 1}
# `--global`: only Palisade's fleet-wide mode against its local mode.
GLOBAL_SELECTION = (["c", "g", "cw", "gw"], ["bulk-limited", "bulk-open", "bulk-open-1"])

# The `global` block the global setups add to `customer-bulk` (see
# filter/core/src/ratelimit/global/config.rs). The identity key is a
# benchmark constant (TEST-ONLY): it only keys the pseudonyms the service sees.
RLS_CLUSTER = "palisade_rls"
RLS_TIMEOUT_MS = 50  # the filter's wait for the service's answer
RLS_REDIS_TIMEOUT_MS = 50  # palisade-rls --redis-timeout-ms (its default)
BENCH_IDENTITY_KEY = base64.b64encode(b"palisade-bench-identity-key-TEST").decode()
GLOBAL_BLOCK = {"cluster": RLS_CLUSTER, "timeout_ms": RLS_TIMEOUT_MS,
                "identity_key": BENCH_IDENTITY_KEY, "on_failure": "deny"}
# cw's and gw's `customer-bulk`: budgets no run of this benchmark reaches
# (a few thousand pages a second for seconds), everything else as in c.
WIDE_REQUESTS = {"limit": 1_000_000, "period_seconds": 1, "burst": 1_000_000}
WIDE_RECORDS_LIMIT = 1_000_000_000_000

# Envoy --concurrency -> wrk threads and connections. The same for every
# setup; wrk runs on the same 2 cores as Envoy, so at 2 workers the client
# competes with Envoy for CPU (as it does for every setup alike).
WRK_LOAD = {1: (1, 16), 2: (2, 32)}

WARMUP = 2  # seconds of untimed load on each fresh process
POOL_SIZE = 10_000  # > 4096 (Palisade's per-worker token cache), > (b)'s 4096-entry cache
TOKEN_TTL = 3600  # demo-config providers[0].max_lifetime_seconds
ISSUER = "https://idp.palisade.test"
AUDIENCE = "customer-api"
# The caller of every scenario: the data-export service, the one identity the
# reference policy lets call the bulk listings.
CLAIMS = {"sub": "data-export", "scope": "customers:export"}

ORDERS_PATH = "/api/v1/orders"
BULK_PATH = "/api/v1/customers?limit=100"
DENIED = ("DELETE", "/api/v1/customers/42")

# What (b) does not check that (c) does; written into the results.
NOT_IN_B = [
    "**Claims compared with the path.** RBAC matches each claim against a "
    "constant, never against a path segment: (b) lets any `customer` read "
    "`GET /api/v1/customers/<any id>` (the policy: only their own "
    "`customer_id`), and any `support` token with a `T-` ticket read any "
    "customer (the policy: only `ticket.customer_id`).",
    "**Fresh MFA.** (b) checks that `amr` holds `mfa` for the bulk export "
    "and erasures, not that `auth_time` is under 300 s old (no clock "
    "arithmetic in RBAC), and answers 403 where Palisade sends the RFC 9470 "
    "step-up challenge (401 `insufficient_user_authentication`).",
    "**Business hours and break glass.** (b) allows an admin erasure at any "
    "hour; it cannot deny off-hours or admit break glass, add "
    "`x-palisade-break-glass`, or mark the access for the audit trail.",
    "**Records.** (b) counts requests, not records: no record budget "
    "(250 records per 300 s in the demo config), no response cut at the "
    "budget, no page-size cap (`limit` ≤ 100), no suspension (120 s).",
    "**Per identity.** (b)'s token bucket (burst 20, 1 per second, mirroring "
    "the demo's 60 per minute, burst 20) is one bucket for the route, shared "
    "by every caller; Palisade keeps one per `sub`. With the one caller of "
    "this benchmark they coincide. Both run before the authorization "
    "decision and count GETs only.",
    "**Audit.** (b) writes nothing per request; (c) writes a hash-chained "
    "audit record for every request here (the demo config keeps the default "
    "`sample_allows: 1`; Palisade logs audit records at Envoy's threshold, "
    "so at `-l warn` they are written at warn and counted in (c)'s cost).",
    "**Request hygiene.** Palisade also refuses paths and headers that read "
    "two ways (400), strips `x-user-`/`x-jwt-`/`x-auth-` and forwarding "
    "headers (`untrusted_edge`), refuses method overrides that disagree, "
    "sets `x-palisade-decision-id`, and applies its own token rules (a "
    "per-provider `alg` allow-list, `crit` refused, duplicate claim names "
    "refused, exactly one credential, 8 KiB at most); which of the token "
    "rules jwt_authn also applies is not checked here. None of this changes "
    "the answers in this benchmark; all of it runs on every request in (c).",
    "**No token.** (b) lets a request without a token through jwt_authn "
    "(`allow_missing`) and RBAC answers 403; Palisade answers 401 with a "
    "`WWW-Authenticate` challenge. Not exercised here.",
]


# --------------------------------------------------------------------------
# Small helpers


def say(msg: str) -> None:
    print(f"[compare] {msg}", file=sys.stderr, flush=True)


class BenchError(Exception):
    """A check failed: the benchmark stops, naming what it saw."""


def http_get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")


def jwt_claims(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def fmt_us(us: float) -> str:
    return f"{us / 1000:.2f} ms" if us >= 1000 else f"{us:.0f} µs"


def fmt_mib(n: float | None) -> str:
    return "n/a" if n is None else f"{n / 1048576:.1f} MiB"


def fmt_delta_mib(n: float | None) -> str:
    return "n/a" if n is None else f"{n / 1048576:+.1f} MiB"


# --------------------------------------------------------------------------
# Tokens


def token_pools(demo: str, needed_seconds: int) -> dict[str, pathlib.Path]:
    """The four token files, minted with `palisade-demo token --count` and
    cached in target/bench-tokens/ while they stay valid long enough."""
    TOKEN_DIR.mkdir(parents=True, exist_ok=True)
    specs = {
        "rs256": ["--key", "envoy/test-keys/rs256.key.pem", "--alg", "RS256", "--kid", "test-rs256"],
        "es256": ["--key", "envoy/test-keys/es256.key.pem", "--alg", "ES256", "--kid", "test-es256"],
    }
    pools = {}
    for alg, key_args in specs.items():
        for kind, count in (("warm", 1), ("fresh", POOL_SIZE)):
            path = TOKEN_DIR / f"{alg}-{kind}.txt"
            meta_path = path.with_suffix(".json")
            meta = {"key": key_args, "claims": CLAIMS, "count": count, "ttl": TOKEN_TTL}
            if not pool_usable(path, meta_path, meta, needed_seconds):
                say(f"minting {count} {alg.upper()} token(s) -> {path.relative_to(REPO)}")
                started = time.monotonic()
                out = subprocess.run(
                    [demo, "token", *key_args, "--ttl", str(TOKEN_TTL), "--count", str(count), json.dumps(CLAIMS)],
                    cwd=REPO, check=True, capture_output=True, text=True,
                ).stdout
                path.write_text(out)
                meta_path.write_text(json.dumps(meta))
                say(f"  {time.monotonic() - started:.1f} s")
            pools[f"{alg}-{kind}"] = path
    return pools


def pool_usable(path: pathlib.Path, meta_path: pathlib.Path, meta: dict, needed_seconds: int) -> bool:
    try:
        if json.loads(meta_path.read_text()) != meta:
            return False
        lines = path.read_text().split()
        if len(lines) != meta["count"]:
            return False
        first, last = jwt_claims(lines[0]), jwt_claims(lines[-1])
        if len({jwt_claims(t)["jti"] for t in lines}) != len(lines):
            return False
        return min(first["exp"], last["exp"]) - time.time() >= needed_seconds
    except (OSError, ValueError, KeyError, IndexError):
        return False


# --------------------------------------------------------------------------
# Envoy configurations


def customer_page() -> str:
    """A page of 100 customer records in the demo API's shape
    (`{"items": [...], "total", "offset", "limit"}`): what the bulk route
    answers, and what Palisade's `customer-bulk` rule counts (`/items`)."""
    cities = ["Lisbon", "Oslo", "Nairobi", "Montreal", "Osaka", "Lima", "Tallinn", "Perth"]
    items = [
        {"id": str(n), "name": f"Customer {n}", "email": f"customer{n}@example.test", "city": cities[(n - 1) % 8]}
        for n in range(1, 101)
    ]
    return json.dumps({"items": items, "total": 1000, "offset": 0, "limit": 100}, separators=(",", ":"))


def orders_page() -> str:
    items = [{"id": str(n), "customer_id": str(n), "total_cents": 500 + n * 7919 % 99500} for n in range(1, 11)]
    return json.dumps({"items": items}, separators=(",", ":"))


BULK_BODY = customer_page()
RECORD_MARK = '"email":'  # once per record of BULK_BODY
OTHER_BODY = orders_page()


def direct(body: str) -> dict:
    return {
        "status": 200,
        "body": {"inline_string": body},
    }


def routes(setup: str) -> list[dict]:
    """The same routes (the same "upstream") for every setup; (b) attaches its
    token bucket to the bulk route, which covers what Palisade's
    `customer-bulk` rule covers: GET on /api/v1/customers and below."""
    bulk = {
        "match": {"path_separated_prefix": "/api/v1/customers",
                  "headers": [{"name": ":method", "string_match": {"exact": "GET"}}]},
        "direct_response": direct(BULK_BODY),
        "response_headers_to_add": [{"header": {"key": "content-type", "value": "application/json"}}],
    }
    if setup == "b":
        bulk["typed_per_filter_config"] = {"envoy.filters.http.local_ratelimit": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
            "stat_prefix": "customer_bulk",
            # The demo's `requests`: 60 per 60 s, burst 20.
            "token_bucket": {"max_tokens": 20, "tokens_per_fill": 1, "fill_interval": "1s"},
            "filter_enabled": {"default_value": {"numerator": 100, "denominator": "HUNDRED"}},
            "filter_enforced": {"default_value": {"numerator": 100, "denominator": "HUNDRED"}},
        }}
    other = {
        "match": {"prefix": "/"},
        "direct_response": direct(OTHER_BODY),
        "response_headers_to_add": [{"header": {"key": "content-type", "value": "application/json"}}],
    }
    return [bulk, other]


def jwt_provider(jwks: dict, cache: bool) -> dict:
    provider = {
        "issuer": ISSUER,
        "audiences": [AUDIENCE],
        "local_jwks": {"inline_string": json.dumps(jwks)},
        "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
        "payload_in_metadata": "jwt_payload",
        "clock_skew_seconds": 30,  # demo-config leeway_seconds
        "max_lifetime": "3600s",  # demo-config max_lifetime_seconds
        "require_expiration": True,
    }
    if cache:
        # Per worker, like Palisade's token cache, and as large (4096).
        provider["jwt_cache_config"] = {"jwt_cache_size": 4096}
    return provider


def claim(path: list[str], matcher: dict) -> dict:
    """An RBAC principal: the jwt_authn payload claim at `path` matches."""
    return {"metadata": {
        "filter": "envoy.filters.http.jwt_authn",
        "path": [{"key": "jwt_payload"}, *({"key": k} for k in path)],
        "value": matcher,
    }}


def has_role(role: str) -> dict:
    return claim(["roles"], {"list_match": {"one_of": {"string_match": {"exact": role}}}})


def method(m: str) -> dict:
    return {"header": {"name": ":method", "string_match": {"exact": m}}}


def path_exact(p: str) -> dict:
    return {"url_path": {"path": {"exact": p}}}


ONE_CUSTOMER = {"url_path": {"path": {"safe_regex": {"regex": "/api/v1/customers/[^/]+"}}}}


def rbac_policies() -> dict:
    """policies/customer_data.rego as far as RBAC can say it. Each policy
    names the Rego rule it stands for; what it cannot check is NOT_IN_B."""
    return {
        # granted if GET /health
        "health": {"permissions": [{"and_rules": {"rules": [method("GET"), path_exact("/health")]}}],
                   "principals": [{"any": True}]},
        # granted if GET /api/v1/customers/<id> and "customer" in roles
        # (NOT checked: <id> == customer_id)
        "customer-reads-a-record": {
            "permissions": [{"and_rules": {"rules": [method("GET"), ONE_CUSTOMER]}}],
            "principals": [has_role("customer")]},
        # granted if GET /api/v1/customers/<id>, "support" in roles, ticket.id starts with "T-"
        # (NOT checked: <id> == ticket.customer_id)
        "support-reads-a-ticketed-record": {
            "permissions": [{"and_rules": {"rules": [method("GET"), ONE_CUSTOMER]}}],
            "principals": [{"and_ids": {"ids": [
                has_role("support"), claim(["ticket", "id"], {"string_match": {"prefix": "T-"}})]}}]},
        # granted if GET a bulk path, sub == "data-export", "customers:export" in scopes
        "bulk-listings": {
            "permissions": [{"and_rules": {"rules": [method("GET"), {"or_rules": {"rules": [
                path_exact("/api/v1/customers"), path_exact("/api/v1/orders")]}}]}}],
            "principals": [{"and_ids": {"ids": [
                claim(["sub"], {"string_match": {"exact": "data-export"}}),
                claim(["scope"], {"string_match": {"safe_regex": {"regex": "(.* )?customers:export( .*)?"}}}),
            ]}}]},
        # granted if GET /api/v1/exports/customers and "data_steward" in roles; privileged
        # (NOT checked: auth_time fresh; no step-up 401)
        "bulk-export": {
            "permissions": [{"and_rules": {"rules": [method("GET"), path_exact("/api/v1/exports/customers")]}}],
            "principals": [{"and_ids": {"ids": [
                has_role("data_steward"),
                claim(["amr"], {"list_match": {"one_of": {"string_match": {"exact": "mfa"}}}})]}}]},
        # granted if DELETE /api/v1/customers/<id> and "admin" in roles; privileged
        # (NOT checked: auth_time fresh, business hours, break glass)
        "erasure": {
            "permissions": [{"and_rules": {"rules": [method("DELETE"), ONE_CUSTOMER]}}],
            "principals": [{"and_ids": {"ids": [
                has_role("admin"),
                claim(["amr"], {"list_match": {"one_of": {"string_match": {"exact": "mfa"}}}})]}}]},
    }


def http_filters(setup: str, jwks: dict, plugin_config: str, wasm: pathlib.Path) -> list[dict]:
    router = {"name": "envoy.filters.http.router", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}
    if setup == "a":
        return [router]
    if setup == "b":
        return [
            {"name": "envoy.filters.http.jwt_authn", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
                "providers": {"demo-idp": jwt_provider(jwks, cache=True)},
                # A token, when present, must verify; without one the policy
                # decides (only /health is open), as in Palisade.
                "rules": [{"match": {"prefix": "/"}, "requires": {"requires_any": {"requirements": [
                    {"provider_name": "demo-idp"}, {"allow_missing": {}}]}}}],
            }},
            # Limits after authentication, before the decision, as Palisade
            # orders them. Enabled only on the bulk route (per-route config).
            {"name": "envoy.filters.http.local_ratelimit", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
                "stat_prefix": "local_rate_limit"}},
            {"name": "envoy.filters.http.rbac", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
                "rules": {"action": "ALLOW", "policies": rbac_policies()}}},
            router,
        ]
    # c: the Wasm filter settings of envoy/sidecar.yaml, FAIL_CLOSED.
    return [
        {"name": "palisade", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": "palisade", "root_id": "palisade", "failure_policy": "FAIL_CLOSED",
                "allow_on_headers_stop_iteration": True,
                "vm_config": {"vm_id": "palisade", "runtime": "envoy.wasm.runtime.v8",
                              "code": {"local": {"filename": str(wasm)}}},
                "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                                  "value": plugin_config},
            }}},
        router,
    ]


def bulk_variant(plugin_config: str, wide: bool, fleet: bool) -> str:
    """The Palisade configuration of c with its `customer-bulk` rule changed:
    budgets raised (`wide`, cw and gw) and/or `global` added (`fleet`, g and
    gw). Everything else, the rule's match, page size and suspension
    included, stays as it is."""
    config = json.loads(plugin_config)
    rule = bulk_rule(config)
    if wide:
        rule["requests"] = dict(WIDE_REQUESTS)
        rule["records"] = {**rule["records"], "limit": WIDE_RECORDS_LIMIT}
    if fleet:
        rule["global"] = dict(GLOBAL_BLOCK)
    return json.dumps(config)


def bulk_rule(config: dict) -> dict:
    rules = [r for r in config.get("rate_limits", []) if r.get("name") == "customer-bulk"]
    if len(rules) != 1 or not all(k in rules[0] for k in ("requests", "records", "suspend_seconds")):
        raise BenchError("the demo configuration has no `customer-bulk` rule with requests, records and "
                         "suspend_seconds: the global setups need one")
    return rules[0]


def rls_config(rule: dict) -> dict:
    """palisade-rls's limits for `rule` (rls/README.md), as
    filter/core/src/ratelimit/global/mod.rs says the service must have them:
    the rule's own numbers. The local request limit is a token bucket (limit
    per period, plus a burst); the service's is a fixed window of
    `limit + burst` requests per `period_seconds`, as envoy/rls-limits.json
    gives the demo's fleet."""
    name, requests, records = rule["name"], rule["requests"], rule["records"]
    return {"domain": "palisade", "limits": [
        {"name": f"{name}-requests", "match": {"limit": name, "kind": "requests"}, "identity": "identity",
         "max_value": requests["limit"] + requests.get("burst", 0), "seconds": requests["period_seconds"]},
        {"name": f"{name}-records", "match": {"limit": name, "kind": "records"}, "identity": "identity",
         "max_value": records["limit"], "seconds": records["period_seconds"], "charge": "always"},
        {"name": f"{name}-suspension", "match": {"limit": name, "kind": "suspension"}, "identity": "identity",
         "max_value": 0, "seconds": rule["suspend_seconds"], "charge": "always"},
    ]}


def rls_cluster(port: int) -> dict:
    """The Envoy cluster the global setups' filter calls: gRPC, so HTTP/2."""
    return {
        "name": RLS_CLUSTER, "type": "STATIC", "connect_timeout": "1s",
        "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http2_protocol_options": {}}}},
        "load_assignment": {"cluster_name": RLS_CLUSTER, "endpoints": [{"lb_endpoints": [{"endpoint": {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]},
    }


def bootstrap(setup: str, jwks: dict, plugin_config: str, wasm: pathlib.Path,
              rls_port: int | None = None) -> dict:
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "ingress",
        # What Palisade requires (README), set for every setup alike.
        "normalize_path": True,
        "merge_slashes": True,
        "path_with_escaped_slashes_action": "REJECT_REQUEST",
        "route_config": {
            "max_direct_response_body_size_bytes": 65536,  # the customer page is ~8 KB
            "virtual_hosts": [{"name": "customer-api", "domains": ["*"], "routes": routes(setup)}]},
        "http_filters": http_filters(setup, jwks, plugin_config, wasm),
    }
    resources = {"listeners": [{
        "name": "ingress",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}],
    }]}
    if rls_port is not None:
        resources["clusters"] = [rls_cluster(rls_port)]
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": resources,
    }


# --------------------------------------------------------------------------
# Envoy processes


_LIVE: dict[int, subprocess.Popen] = {}


def _die_with_parent() -> None:
    # PR_SET_PDEATHSIG: the kernel sends SIGTERM to Envoy if this driver dies.
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)
    except OSError:
        pass


def stop_all() -> None:
    for pid, proc in list(_LIVE.items()):
        stop(proc)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    _LIVE.pop(proc.pid, None)


class Envoy:
    def __init__(self, envoy_bin: str, setup: str, concurrency: int, config: pathlib.Path,
                 work: pathlib.Path, pidfile: pathlib.Path):
        self.setup, self.concurrency = setup, concurrency
        self.log_path = work / f"envoy-{setup}-c{concurrency}.log"
        admin_path = work / f"admin-{setup}-c{concurrency}.txt"
        admin_path.unlink(missing_ok=True)
        self.log_path.write_bytes(b"")
        log = open(self.log_path, "ab")  # O_APPEND: the driver may truncate it between runs
        started = time.monotonic()
        self.proc = subprocess.Popen(
            [envoy_bin, "-c", str(config), "--concurrency", str(concurrency), "-l", "warn",
             "--disable-hot-restart", "--admin-address-path", str(admin_path)],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        log.close()
        _LIVE[self.proc.pid] = self.proc
        with open(pidfile, "a") as f:
            f.write(f"{self.proc.pid}\n")
        deadline = started + 60
        self.admin = None
        while True:
            if self.proc.poll() is not None:
                raise BenchError(f"Envoy ({setup}) exited with {self.proc.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise BenchError(f"Envoy ({setup}) not ready after 60 s:\n{self.log_tail()}")
            if self.admin is None and admin_path.exists():
                address = admin_path.read_text().strip()
                if re.fullmatch(r"[0-9.]+:[0-9]+", address):  # not a half-written file
                    self.admin = "http://" + address
            if self.admin is not None:
                try:
                    status, body = http_get(self.admin + "/ready", timeout=1)
                    if status == 200 and body.strip() == "LIVE":
                        break
                except OSError:
                    pass
            time.sleep(0.005)
        self.ready_seconds = time.monotonic() - started
        listeners = json.loads(http_get(self.admin + "/listeners?format=json")[1])
        port = listeners["listener_statuses"][0]["local_address"]["socket_address"]["port_value"]
        self.url = f"http://127.0.0.1:{port}"
        self.memory_at_ready = self.memory()

    def memory(self) -> dict:
        rss = None
        try:
            for line in pathlib.Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) * 1024
        except OSError:
            pass
        allocated = None
        try:
            allocated = int(json.loads(http_get(self.admin + "/memory")[1])["allocated"])
        except (OSError, ValueError, KeyError):
            pass
        return {"rss": rss, "allocated": allocated}

    def counters(self, prefix: str) -> dict[str, int]:
        status, body = http_get(self.admin + "/stats?format=json&usedonly&filter=" + prefix)
        out = {}
        for stat in json.loads(body).get("stats", []):
            if "value" in stat:
                out[stat["name"]] = int(stat["value"])
        return out

    def log_tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def take_log(self) -> tuple[int, list[str]]:
        """Audit records written since the last call, and any other log lines;
        then empties the log (Palisade writes one audit line per request)."""
        audit, other = 0, []
        with open(self.log_path, "rb") as f:
            for raw in f:
                if b"palisade.audit " in raw:
                    audit += 1
                elif raw.strip():
                    other.append(raw.decode("utf-8", "replace").rstrip())
        os.truncate(self.log_path, 0)
        return audit, other

    def stop(self) -> None:
        stop(self.proc)


def free_port() -> int:
    """A loopback port nobody listens on right now (redis-server cannot be
    given port 0: that turns its TCP listener off)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def spawn(cmd: list[str], log_path: pathlib.Path, pidfile: pathlib.Path) -> subprocess.Popen:
    """A child that dies with this driver, logging to `log_path`, its PID
    appended to `pidfile` for the shell's trap."""
    log = open(log_path, "ab")
    proc = subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
    log.close()
    _LIVE[proc.pid] = proc
    with open(pidfile, "a") as f:
        f.write(f"{proc.pid}\n")
    return proc


class Redis:
    """redis-server on a free loopback port, without persistence, for the
    whole run; the global setups' palisade-rls keep their counters in it,
    each in its own database (REDIS_DB)."""

    def __init__(self, binary: str, work: pathlib.Path, pidfile: pathlib.Path):
        self.port = free_port()
        self.log_path = work / "redis.log"
        self.proc = spawn([binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                           "--appendonly", "no", "--dir", str(work), "--logfile", ""],
                          self.log_path, pidfile)
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None:
                raise BenchError(f"redis-server exited with {self.proc.returncode}:\n{tail(self.log_path)}")
            try:
                if self.command("PING") == "+PONG":
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise BenchError(f"redis-server did not answer PING on {self.port}:\n{tail(self.log_path)}")
            time.sleep(0.02)
        self.version = self.info("server").get("redis_version", "?")

    def url(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def command(self, *words: str) -> str:
        """One inline command; its reply (a bulk reply's payload whole)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
            sock.sendall((" ".join(words) + "\r\n").encode())
            data = b""
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
                head, _, rest = data.partition(b"\r\n")
                if not _:
                    continue
                if head[:1] == b"$":
                    n = int(head[1:])
                    if n < 0 or len(rest) >= n + 2:
                        return rest[:max(n, 0)].decode("utf-8", "replace")
                else:
                    return head.decode("utf-8", "replace")
        raise OSError(f"redis-server closed the connection on {' '.join(words)}")

    def info(self, section: str) -> dict[str, str]:
        out = {}
        for line in self.command("INFO", section).splitlines():
            if ":" in line and not line.startswith("#"):
                k, v = line.split(":", 1)
                out[k] = v.strip()
        return out

    def commands_processed(self) -> int:
        return int(self.info("stats")["total_commands_processed"])

    def flush(self) -> None:
        if self.command("FLUSHALL") != "+OK":
            raise BenchError("redis-server refused FLUSHALL")

    def keys(self, db: int) -> int:
        keyspace = self.info("keyspace").get(f"db{db}", "")
        m = re.match(r"keys=(\d+)", keyspace)
        return int(m.group(1)) if m else 0


class Rls:
    """palisade-rls for one global setup, on a loopback port it picks,
    counting in its own Redis database."""

    def __init__(self, binary: str, setup: str, config: dict, redis: Redis, work: pathlib.Path,
                 pidfile: pathlib.Path):
        self.setup = setup
        config_path = work / f"rls-{setup}.json"
        config_path.write_text(json.dumps(config, indent=1))
        self.log_path = work / f"rls-{setup}.log"
        self.log_path.write_bytes(b"")
        self.proc = spawn([binary, "--config", str(config_path), "--redis", redis.url(REDIS_DB[setup]),
                           "--listen", "127.0.0.1:0", "--redis-timeout-ms", str(RLS_REDIS_TIMEOUT_MS)],
                          self.log_path, pidfile)
        deadline = time.monotonic() + 30
        self.port = None
        while self.port is None:
            m = re.search(r"listening on 127\.0\.0\.1:(\d+)", self.log_path.read_text(errors="replace"))
            if m:
                self.port = int(m.group(1))
            elif self.proc.poll() is not None:
                raise BenchError(f"palisade-rls ({setup}) exited with {self.proc.returncode}:\n{tail(self.log_path)}")
            elif time.monotonic() > deadline:
                raise BenchError(f"palisade-rls ({setup}) not listening after 30 s:\n{tail(self.log_path)}")
            else:
                time.sleep(0.02)
        self.lines_seen = 0

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise BenchError(f"palisade-rls ({self.setup}) exited with {self.proc.returncode}:\n{tail(self.log_path)}")

    def new_lines(self) -> list[str]:
        """Log lines since the last call, but for the startup and Redis
        connection lines (anything else is a storage error: one per failed
        request)."""
        lines = self.log_path.read_text(errors="replace").splitlines()
        fresh, self.lines_seen = lines[self.lines_seen:], len(lines)
        return [l for l in fresh if l.strip() and "listening on" not in l and "connected" not in l]


def tail(path: pathlib.Path, n: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


# --------------------------------------------------------------------------
# Scenarios


class Scenario:
    def __init__(self, key: str, title: str, pool: str, method: str, path: str,
                 expect: dict[str, int], allowed: dict[str, set[str]], must: dict[str, set[str]] | None = None,
                 full_bytes: int | None = None, note: str = "", setup_notes: dict[str, str] | None = None,
                 record_mark: str | None = None, one_connection: bool = False):
        self.key, self.title, self.pool, self.method, self.path = key, title, pool, method, path
        self.setups = [s for s in SETUPS if s in expect]  # the setups it runs on
        self.expect = expect  # the curl check's status per setup
        self.allowed = allowed  # status-mix keys a timed run may show, per setup
        self.must = must or {}  # status-mix keys a timed run must show (any of), per setup
        self.full_bytes = full_bytes
        self.record_mark = record_mark  # counts the records 2xx bodies deliver (bench/lua/compare.lua)
        self.one_connection = one_connection  # `wrk -t1 -c1` instead of WRK_LOAD: latency without queueing
        self.note = note
        self.setup_notes = setup_notes or {}  # added to the note when the setup runs

    def describe(self, setups: list[str]) -> str:
        return self.note + "".join(n for s, n in self.setup_notes.items() if s in setups)


def scenarios() -> list[Scenario]:
    ok = {s: {"200"} for s in ("a", "b", "c")}
    limited_c = {"200", "200 cut", "429 rate_limited", "429 records_exhausted", "403 suspended"}
    refused_c = {"429 rate_limited", "429 records_exhausted", "403 suspended"}
    allowed_note = ("data-export (scope customers:export) lists orders: `GET /api/v1/orders` → 200 "
                    "in b and c (the bulk-listing rule; no rate limit covers orders)")
    out = [
        Scenario(
            "bulk-limited", "bulk list, rate limited", "rs256-warm", "GET", BULK_PATH,
            expect={"a": 200, "b": 200, "c": 200, "g": 200},
            allowed={"a": {"200"},
                     "b": {"200", "429 local_rate_limited"},
                     "c": limited_c, "g": limited_c},
            must={"b": {"429 local_rate_limited"}, "c": refused_c, "g": refused_c},
            full_bytes=len(BULK_BODY), record_mark=RECORD_MARK,
            note=("data-export pages through `GET /api/v1/customers?limit=100` (100 records a page, "
                  "RS256, warm)"),
            setup_notes={
                "b": "; b's token bucket refuses after its burst (429, before RBAC)",
                "c": ("; c counts records, cuts the response that reaches the budget of 250 and suspends "
                      "the caller for 120 s, so most of c's answers are 403 `suspended`, given before the "
                      "policy runs"),
                "g": ("; g does what c does and also counts the rule fleet-wide in palisade-rls, with "
                      "the same limits: the requests the local limits let through are checked with the "
                      "service and their records charged to it, the suspension is pushed to it, and the "
                      "requests the local limits refuse make no call"),
            },
        ),
        Scenario(
            "bulk-open", "bulk list, within budget", "rs256-warm", "GET", BULK_PATH,
            expect={"cw": 200, "gw": 200}, allowed={"cw": {"200"}, "gw": {"200"}},
            full_bytes=len(BULK_BODY),
            note=("the same requests as the rate-limited bulk list, with `customer-bulk`'s budgets "
                  f"raised ({WIDE_REQUESTS['limit']:,} requests per {WIDE_REQUESTS['period_seconds']} s, "
                  f"burst {WIDE_REQUESTS['burst']:,}; {WIDE_RECORDS_LIMIT:,} records per 300 s) so that "
                  "every page is served whole: cw counts them locally; gw also checks each request "
                  "with palisade-rls before forwarding it and charges its 100 records as the response "
                  "completes (two gRPC calls a request)"),
        ),
        Scenario(
            "bulk-open-1", "bulk list, within budget, 1 connection", "rs256-warm", "GET", BULK_PATH,
            expect={"cw": 200, "gw": 200}, allowed={"cw": {"200"}, "gw": {"200"}},
            full_bytes=len(BULK_BODY), one_connection=True,
            note=("the within-budget bulk list over one connection (`wrk -t1 -c1`, one request at a time): "
                  "the latency a request pays without queueing behind others, i.e. what the service's "
                  "two round trips add to each request"),
        ),
        Scenario("rs256-warm", "RS256, warm token", "rs256-warm", "GET", ORDERS_PATH,
                 expect={"a": 200, "b": 200, "c": 200}, allowed=ok, note=allowed_note + "; one token"),
        Scenario("rs256-fresh", "RS256, fresh token", "rs256-fresh", "GET", ORDERS_PATH,
                 expect={"a": 200, "b": 200, "c": 200}, allowed=ok,
                 note=allowed_note + f"; {POOL_SIZE} tokens cycled, every one a cache miss"),
        Scenario("es256-warm", "ES256, warm token", "es256-warm", "GET", ORDERS_PATH,
                 expect={"a": 200, "b": 200, "c": 200}, allowed=ok, note=allowed_note + "; one token"),
        Scenario("es256-fresh", "ES256, fresh token", "es256-fresh", "GET", ORDERS_PATH,
                 expect={"a": 200, "b": 200, "c": 200}, allowed=ok,
                 note=allowed_note + f"; {POOL_SIZE} tokens cycled, every one a cache miss"),
        Scenario("denied", "denied (403)", "rs256-warm", DENIED[0], DENIED[1],
                 expect={"a": 200, "b": 403, "c": 403},
                 allowed={"a": {"200"}, "b": {"403 RBAC: access denied"}, "c": {"403 policy_denied"}},
                 note=("the warm RS256 data-export token asks `DELETE /api/v1/customers/42`: only "
                       "`admin` may erase, so 403 by role in b (RBAC) and c (policy_denied); DELETE is "
                       "outside both rate limits, so nothing but the decision answers")),
    ]
    return out


def curl_status(url: str, method: str, token: str) -> tuple[int, str]:
    r = subprocess.run(
        ["curl", "-s", "-o", "-", "-w", "\n%{http_code}", "-X", method,
         "-H", f"authorization: Bearer {token}", url],
        capture_output=True, text=True, timeout=10)
    body, _, code = r.stdout.rpartition("\n")
    return int(code or 0), body


def precheck(sc: Scenario, envoys: dict[str, Envoy], tokens: list[str]) -> None:
    for setup in (s for s in sc.setups if s in envoys):
        for token in {tokens[0], tokens[-1]}:
            code, body = curl_status(envoys[setup].url + sc.path, sc.method, token)
            if code != sc.expect[setup]:
                raise BenchError(
                    f"check before {sc.key}: ({setup}) answered {sc.method} {sc.path} with {code}, "
                    f"expected {sc.expect[setup]}; body: {body[:300]}\nEnvoy log:\n{envoys[setup].log_tail()}")


def run_wrk(url: str, method: str, tokens_file: pathlib.Path, seconds: int, concurrency: int,
            full_bytes: int | None, record_mark: str | None = None, one_connection: bool = False) -> dict:
    threads, conns = (1, 1) if one_connection else WRK_LOAD[concurrency]
    env = dict(os.environ, BENCH_TOKENS=str(tokens_file), BENCH_THREADS=str(threads), BENCH_METHOD=method)
    if full_bytes:
        env["BENCH_FULL_BYTES"] = str(full_bytes)
    if record_mark:
        env["BENCH_RECORD_MARK"] = record_mark
    cmd = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{seconds}s", "--latency", "-s", str(LUA), url]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=seconds + 60)
    line = next((l for l in r.stdout.splitlines() if l.startswith("BENCH_RESULT ")), None)
    if r.returncode != 0 or line is None:
        raise BenchError(f"wrk failed ({r.returncode}): {r.stdout}\n{r.stderr}")
    result = json.loads(line[len("BENCH_RESULT "):])
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    return result


def check_mix(sc: Scenario, setup: str, result: dict) -> None:
    mix = result["status"]
    unexpected = {k: v for k, v in mix.items() if k not in sc.allowed[setup]}
    if unexpected or not mix:
        raise BenchError(f"{sc.key} on ({setup}): unexpected responses {unexpected or 'none at all'} "
                         f"(whole mix {mix}; expected only {sorted(sc.allowed[setup])})")
    must = sc.must.get(setup)
    if must and not must & mix.keys():
        raise BenchError(f"{sc.key} on ({setup}): none of {sorted(must)} in the mix {mix}")


# --------------------------------------------------------------------------
# The run


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--envoy")
    ap.add_argument("--wasm")
    ap.add_argument("--demo", help="palisade-demo binary (release: it signs 20k tokens)")
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", help="results directory (default bench/results, or a temp dir with --quick)")
    ap.add_argument("--command", default="bench/compare.sh")
    ap.add_argument("--rls", help="palisade-rls binary, for the global setups (g, gw)")
    ap.add_argument("--redis-server", help="redis-server binary, for the global setups (g, gw)")
    ap.add_argument("--global", dest="global_only", action="store_true",
                    help="only Palisade's fleet-wide mode against its local mode (setups c, g, cw, gw on "
                         "the bulk route); results in global.md, .svg and .json")
    ap.add_argument("--setups", help="comma-separated subset of " + ",".join(SETUPS) +
                    " (default: all; a scenario runs on those of its setups that are chosen)")
    ap.add_argument("--pidfile", help="every PID started (Envoy, redis-server, palisade-rls) is appended "
                                      "here (for the shell's trap)")
    ap.add_argument("--replot", metavar="JSON",
                    help="only rewrite the .md and .svg from a compare.json or global.json")
    args = ap.parse_args()
    if args.replot:
        src = pathlib.Path(args.replot)
        out = pathlib.Path(args.out) if args.out else src.parent
        out.mkdir(parents=True, exist_ok=True)
        write_results(json.loads(src.read_text()), out)
        return 0
    if not (args.envoy and args.wasm and args.demo):
        ap.error("--envoy, --wasm and --demo are required (bench/compare.sh passes them)")
    if args.quick:
        args.seconds, args.rounds = 1, 1
    if args.global_only and args.setups:
        ap.error("--global and --setups do not go together")
    if args.seconds < 1 or args.rounds < 1:
        ap.error("--seconds and --rounds must be at least 1")
    out_dir = pathlib.Path(args.out) if args.out else (
        pathlib.Path(tempfile.mkdtemp(prefix="palisade-compare-")) if args.quick else REPO / "bench" / "results")
    out_dir.mkdir(parents=True, exist_ok=True)
    work = pathlib.Path(tempfile.mkdtemp(prefix="palisade-compare-work-"))
    pidfile = pathlib.Path(args.pidfile) if args.pidfile else work / "envoy.pids"

    def on_signal(signum, frame):
        stop_all()
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        return run(args, out_dir, work, pidfile)
    except BenchError as e:
        say(f"FAILED: {e}")
        return 1
    finally:
        stop_all()
        shutil.rmtree(work, ignore_errors=True)


def run(args, out_dir: pathlib.Path, work: pathlib.Path, pidfile: pathlib.Path) -> int:
    started_at = datetime.datetime.now(datetime.timezone.utc)
    wall = time.monotonic()
    if args.global_only:
        chosen, keys = GLOBAL_SELECTION
    else:
        chosen = [s.strip() for s in args.setups.split(",")] if args.setups else list(SETUPS)
        keys = None
    unknown = [s for s in chosen if s not in SETUPS]
    if unknown or not chosen:
        raise BenchError(f"unknown setups {unknown} (known: {', '.join(SETUPS)})")
    setups = [s for s in SETUPS if s in chosen]
    scs = [sc for sc in scenarios() if (keys is None or sc.key in keys) and set(sc.setups) & set(setups)]
    if not scs:
        raise BenchError(f"no scenario runs on {setups}")
    fleet = [s for s in setups if s in GLOBAL_TWIN]
    if fleet and not (args.rls and args.redis_server):
        raise BenchError(f"setups {fleet} need --rls and --redis-server (bench/compare.sh passes them)")
    levels = sorted(WRK_LOAD)
    timed = sum(len([s for s in sc.setups if s in setups]) for sc in scs)
    per_round = int(timed * (args.seconds + 0.3) + len(setups) * (WARMUP + 3) + 5)
    estimate = len(levels) * args.rounds * per_round
    pools = token_pools(args.demo, needed_seconds=estimate + 600)
    tokens = {name: path.read_text().split() for name, path in pools.items()}

    wasm = pathlib.Path(args.wasm).resolve()
    # The demo configuration as `palisade-demo render-config` builds it from
    # the working tree (the reference policy, test JWKS, limits): the
    # committed envoy/demo-config.json whenever that is up to date (a test
    # checks it), and the policy being worked on when it is not.
    plugin_config = subprocess.run([args.demo, "render-config"], cwd=REPO, check=True,
                                   capture_output=True, text=True).stdout
    committed = json.loads((REPO / "envoy" / "demo-config.json").read_text())
    config_is_committed = json.loads(plugin_config) == committed
    if not config_is_committed:
        say("note: the working tree's demo config differs from the committed envoy/demo-config.json "
            "(policies/customer_data.rego edited since it was rendered); (c) runs the working tree's")
    # BENCH_AUDIT='{"sample_allows": 0}': (c) with this `audit` section, to
    # measure what the audit trail costs. Recorded with the results.
    audit_override = os.environ.get("BENCH_AUDIT", "")
    if audit_override:
        try:
            section = json.loads(audit_override)
        except ValueError as e:
            raise BenchError(f"BENCH_AUDIT is not JSON: {e}")
        plugin_config = json.dumps({**json.loads(plugin_config), "audit": section})
    plugin_configs = {s: plugin_config for s in setups if s in PALISADE}
    for s in setups:
        if s in ("g", "cw", "gw"):
            plugin_configs[s] = bulk_variant(plugin_config, wide=s in ("cw", "gw"), fleet=s in GLOBAL_TWIN)

    # The fleet-wide setups' service: one redis-server, one palisade-rls each.
    redis, rls, rls_configs = None, {}, {}
    if fleet:
        redis = Redis(args.redis_server, work, pidfile)
        for s in fleet:
            rls_configs[s] = rls_config(bulk_rule(json.loads(plugin_configs[s])))
            rls[s] = Rls(args.rls, s, rls_configs[s], redis, work, pidfile)
        say(f"redis-server {redis.version} on 127.0.0.1:{redis.port}; palisade-rls "
            + ", ".join(f"({s}) on 127.0.0.1:{rls[s].port}, redis db {REDIS_DB[s]}" for s in fleet))

    jwks = json.loads((REPO / "envoy" / "test-keys" / "jwks.json").read_text())
    configs = {}
    for setup in setups:
        configs[setup] = work / f"envoy-{setup}.json"
        configs[setup].write_text(json.dumps(bootstrap(setup, jwks, plugin_configs.get(setup, ""), wasm,
                                                       rls[setup].port if setup in rls else None), indent=1))

    # Warm-up (untimed), per setup: the allowed RS256 request; for cw and gw
    # the bulk page they are measured on, which also opens the connection
    # to the service and brings the global path's code up to speed.
    warm_orders = next(sc for sc in scenarios() if sc.key == "rs256-warm")
    warm_bulk = next(sc for sc in scenarios() if sc.key == "bulk-open")
    warmups = {s: warm_bulk if s in ("cw", "gw") else warm_orders for s in setups}

    runs = []  # every timed run
    ready = {f"{s} {c}": [] for s in setups for c in levels}  # "setup workers" -> seconds per round
    memory = {}  # "setup workers" -> {"ready": {...}, "load": {...}}
    log_notes = {s: [] for s in setups}
    say(f"{len(levels)} concurrency levels x {args.rounds} rounds x {timed} timed runs "
        f"({len(scs)} scenarios on {', '.join(setups)}), "
        f"{args.seconds} s each (about {estimate // 60} min {estimate % 60} s)")

    def note(setup: str, lines: list[str]) -> None:
        for line in lines:
            if len(log_notes[setup]) < 10:
                log_notes[setup].append(line)

    for conc in levels:
        for rnd in range(args.rounds):
            envoys = {}
            try:
                if redis:
                    # Fresh fleet budgets, as the fresh Envoys have fresh local ones.
                    redis.flush()
                    for r in rls.values():
                        r.check_alive()
                for setup in setups:
                    envoys[setup] = Envoy(args.envoy, setup, conc, configs[setup], work, pidfile)
                    ready[f"{setup} {conc}"].append(envoys[setup].ready_seconds)
                if rnd == 0:
                    for setup in setups:
                        memory[f"{setup} {conc}"] = {"ready": envoys[setup].memory_at_ready}
                say(f"concurrency {conc}, round {rnd + 1}: ready in "
                    + ", ".join(f"{s} {envoys[s].ready_seconds:.2f} s" for s in setups))
                # Warm-up (untimed): V8's tier-up, connection pools, first cache entries.
                for setup in setups:
                    warm = warmups[setup]
                    code, body = curl_status(envoys[setup].url + warm.path, warm.method, tokens[warm.pool][0])
                    if code != 200:
                        raise BenchError(f"warm-up: ({setup}) answered {warm.method} {warm.path} with {code}, "
                                         f"expected 200; body: {body[:300]}\nEnvoy log:\n{envoys[setup].log_tail()}")
                    run_wrk(envoys[setup].url + warm.path, warm.method, pools[warm.pool], WARMUP, conc, None)
                    envoys[setup].take_log()
                    if setup in rls:
                        note(setup, [f"palisade-rls, warm-up: {l}" for l in rls[setup].new_lines()])
                for i, sc in enumerate(scs):
                    here = [s for s in sc.setups if s in setups]
                    precheck(sc, envoys, tokens[sc.pool])
                    shift = (rnd + i) % len(here)
                    for setup in here[shift:] + here[:shift]:
                        before = envoys[setup].counters("jwt_authn") if setup == "b" else {}
                        procs = {"envoy": envoys[setup].proc.pid}
                        if setup in rls:
                            before = fleet_counters(envoys[setup])
                            redis_before = redis.commands_processed()
                            procs.update({"palisade-rls": rls[setup].proc.pid, "redis-server": redis.proc.pid})
                        cpu_before = {k: cpu_seconds(pid) for k, pid in procs.items()}
                        wrk_before = children_cpu_seconds()
                        result = run_wrk(envoys[setup].url + sc.path, sc.method, pools[sc.pool],
                                         args.seconds, conc, sc.full_bytes, sc.record_mark, sc.one_connection)
                        result["cpu_s"] = {"wrk": children_cpu_seconds() - wrk_before}
                        if not sc.record_mark:
                            result.pop("records", None)
                        if setup == "b":
                            after = envoys[setup].counters("jwt_authn")
                            result["jwt_cache"] = {k.rsplit(".", 1)[-1]: after.get(k, 0) - before.get(k, 0)
                                                   for k in after if k.endswith(("jwt_cache_hit", "jwt_cache_miss"))}
                        if setup in rls:
                            # The calls still in flight when wrk stops (a
                            # charge, a suspension) land within a tick.
                            time.sleep(0.3)
                            after = fleet_counters(envoys[setup])
                            result["fleet"] = {k: after.get(k, 0) - before.get(k, 0) for k in after
                                               if after.get(k, 0) != before.get(k, 0)}
                            result["fleet"]["redis_commands"] = redis.commands_processed() - redis_before
                            rls[setup].check_alive()
                            note(setup, [f"palisade-rls: {l}" for l in rls[setup].new_lines()])
                        # CPU seconds each process used during the run (and, for
                        # the global setups, the 0.3 s after it).
                        result["cpu_s"].update({k: cpu_seconds(pid) - cpu_before[k] for k, pid in procs.items()})
                        audit, other = envoys[setup].take_log()
                        result["audit_records"] = audit
                        note(setup, other)
                        check_mix(sc, setup, result)
                        result.update(scenario=sc.key, setup=setup, concurrency=conc, round=rnd + 1)
                        runs.append(result)
                        say(f"  c{conc} r{rnd + 1} {sc.key:<13} ({setup:>2}) {result['rps']:>9.0f} req/s  "
                            f"p99 {fmt_us(result['latency_us']['p99']):>9}  {mix_text(result['status'])}"
                            + (f"; {result['records']} records" if "records" in result else "")
                            + (f"  [{fleet_text(result)}]" if "fleet" in result else ""))
                if rnd == args.rounds - 1:
                    for setup in setups:
                        memory[f"{setup} {conc}"]["load"] = envoys[setup].memory()
            finally:
                for e in envoys.values():
                    e.stop()

    elapsed = time.monotonic() - wall
    wasm_name = str(wasm.relative_to(REPO)) if wasm.is_relative_to(REPO) else str(wasm)
    name = "global" if args.global_only else "compare"
    context = {
        "name": name,
        "started": started_at.strftime("%Y-%m-%d %H:%M"), "elapsed": elapsed, "machine": machine(),
        "command": args.command, "seconds": args.seconds, "rounds": args.rounds, "quick": args.quick,
        "wasm": wasm_name, "wasm_bytes": wasm.stat().st_size, "envoy_version": envoy_version(args.envoy),
        "audit_override": audit_override, "config_is_committed": config_is_committed,
        "setups": setups, "scenarios": [sc.key for sc in scs],
        "runs": runs, "ready": ready, "memory": memory, "levels": levels, "log_notes": log_notes,
    }
    if fleet:
        rls_bin = pathlib.Path(args.rls).resolve()
        context["fleet"] = {
            "redis_version": redis.version,
            "rls": str(rls_bin.relative_to(REPO)) if rls_bin.is_relative_to(REPO) else str(rls_bin),
            "rls_configs": rls_configs,
            "rules": {s: bulk_rule(json.loads(plugin_configs[s])) for s in ("c", *fleet, "cw")
                      if s in plugin_configs},
        }
    (out_dir / f"{name}.json").write_text(json.dumps(context, indent=1) + "\n")
    write_results(context, out_dir)
    say(f"{elapsed / 60:.1f} min")
    return 0


def fleet_counters(envoy: "Envoy") -> dict[str, int]:
    """The counters of a global setup's calls to the service: Envoy's for
    the cluster (calls, connections, timeouts) and Palisade's failures."""
    out = {}
    for name, value in envoy.counters(f"cluster\\.{RLS_CLUSTER}\\.|rls_failures").items():
        short = name.split(f"cluster.{RLS_CLUSTER}.", 1)[-1]
        if short.startswith(("upstream_rq_", "upstream_cx_total", "upstream_cx_connect_fail", "grpc.")) \
                or "rls_failures" in name:
            out[short] = value
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process, from /proc/PID/stat."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    """User + system CPU time of this driver's finished children (wrk, curl)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def rls_calls(fleet: dict) -> int:
    return fleet.get("upstream_rq_total", 0)


def rls_failures(fleet: dict) -> int:
    return sum(v for k, v in fleet.items() if "rls_failures" in k)


def fleet_text(result: dict) -> str:
    f = result["fleet"]
    n = max(result["requests"], 1)
    return (f"{rls_calls(f) / n:.2f} RLS calls/req, {f.get('redis_commands', 0) / n:.1f} Redis cmds/req, "
            f"{rls_failures(f)} RLS failures")


def write_results(ctx: dict, out_dir: pathlib.Path) -> None:
    name = ctx.get("name", "compare")
    md = out_dir / f"{name}.md"
    svg = out_dir / f"{name}.svg"
    md.write_text(markdown(ctx))
    svg.write_text(plot(ctx))
    print(md.read_text())
    say(f"wrote {md}, {svg} and {name}.json (raw runs)")


def envoy_version(envoy_bin: str) -> str:
    out = subprocess.run([envoy_bin, "--version"], capture_output=True, text=True).stdout
    m = re.search(r"/(\d+\.\d+\.\d+)/(\w+)/(\w+)/(\w+)", out)
    return f"{m.group(1)} ({m.group(3)}, {m.group(4)})" if m else out.strip()


def mix_text(mix: dict[str, int]) -> str:
    return ", ".join(f"{k} ×{v}" for k, v in sorted(mix.items(), key=lambda kv: -kv[1]))


# --------------------------------------------------------------------------
# Results


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kib = next(int(l.split()[1]) for l in pathlib.Path("/proc/meminfo").read_text().splitlines()
                       if l.startswith("MemTotal:"))
    except (OSError, StopIteration):
        mem_kib = 0
    return f"{os.cpu_count()} CPUs (nproc), {mem_kib / 1048576:.1f} GiB RAM, {cpu}, {platform.system()} {platform.release()}"


def medians(runs: list[dict], scenario: str, setup: str, conc: int) -> dict | None:
    rs = [r for r in runs if r["scenario"] == scenario and r["setup"] == setup and r["concurrency"] == conc]
    if not rs:
        return None
    mix: dict[str, int] = {}
    for r in rs:
        for k, v in r["status"].items():
            mix[k] = mix.get(k, 0) + v
    errors = {k: sum(r["errors"][k] for r in rs) for k in ("connect", "read", "write", "timeout")}
    out = {
        "rps": statistics.median(r["rps"] for r in rs),
        "rps_all": [r["rps"] for r in rs],
        "mix": mix,
        "errors": {k: v for k, v in errors.items() if v},
        "audit": sum(r.get("audit_records", 0) for r in rs),
        "requests": sum(r["requests"] for r in rs),
    }
    for p in ("p50", "p99", "p99.9"):
        out[p] = statistics.median(r["latency_us"][p] for r in rs)
    if all("records" in r for r in rs):
        out["records"] = statistics.median(r["records"] for r in rs)
        out["records_all"] = [r["records"] for r in rs]
    if all("cpu_s" in r for r in rs):
        out["cpu_us"] = {k: statistics.median(r["cpu_s"].get(k, 0) / max(r["requests"], 1) * 1e6 for r in rs)
                         for k in rs[0]["cpu_s"]}
    fleets = [r["fleet"] for r in rs if "fleet" in r]
    if fleets:
        out["fleet"] = {k: sum(f.get(k, 0) for f in fleets) for k in {k for f in fleets for k in f}}
    caches = [r["jwt_cache"] for r in rs if r.get("jwt_cache")]
    if caches:
        out["jwt_cache"] = {k: sum(c.get(k, 0) for c in caches) for k in ("jwt_cache_hit", "jwt_cache_miss")}
    return out


def present(ctx: dict) -> tuple[list[str], list["Scenario"]]:
    """The setups and scenarios a run had (older JSON: a, b, c and every
    scenario with runs)."""
    setups = ctx.get("setups") or [s for s in SETUPS if any(r["setup"] == s for r in ctx["runs"])]
    keys = ctx.get("scenarios") or sorted({r["scenario"] for r in ctx["runs"]})
    return setups, [sc for sc in scenarios() if sc.key in keys]


def ratio(x: float, y: float, unit: str = "") -> str:
    return f"{x / y:.2f}{unit}" if y else "n/a"


def markdown(ctx: dict) -> str:
    runs, levels = ctx["runs"], ctx["levels"]
    setups, scs = present(ctx)
    fleet_setups = [s for s in setups if s in GLOBAL_TWIN]
    fleet = ctx.get("fleet", {})
    is_global = ctx.get("name") == "global"
    L = []
    w = L.append
    if is_global:
        w("# Palisade's fleet-wide (global) rate limits against its local ones")
    else:
        w("# Envoy alone, Envoy's native filters, and Envoy + Palisade")
    w("")
    w("Written by `bench/compare.sh`; do not edit by hand.")
    w("")
    w(f"- date: {ctx['started']} UTC; whole run {ctx['elapsed'] / 60:.1f} min")
    w(f"- machine: {ctx['machine']}. Everything (wrk, every Envoy"
      + (", palisade-rls, redis-server" if fleet_setups else "") + ") shares "
      "these CPUs, so the numbers are noisy: compare ratios taken in the same run, not absolute numbers.")
    w(f"- Envoy {ctx['envoy_version']}, V8 Wasm runtime, `-l warn` for every setup")
    w(f"- command: `{ctx['command']}` ({ctx['seconds']} s per timed run, {ctx['rounds']} round(s), "
      f"medians over rounds{'; --quick: a smoke run, not a measurement' if ctx['quick'] else ''})")
    loads = "; ".join(f"Envoy `--concurrency {c}`: `wrk -t{t} -c{n} -d{ctx['seconds']}s --latency -s bench/lua/compare.lua`"
                      for c, (t, n) in sorted(WRK_LOAD.items()))
    w(f"- load: {loads}; the same for every setup"
      + ("" if not any(sc.one_connection for sc in scs) else
         f" (but for the one-connection scenario: `wrk -t1 -c1 -d{ctx['seconds']}s`)")
      + ". wrk runs on the same machine (loopback), so it "
      "shares the CPUs with Envoy; at 2 workers on 2 cores client and server compete.")
    if PALISADE & set(setups):
        w(f"- Palisade: `{ctx['wasm']}`, "
          f"{ctx['wasm_bytes']:,} bytes ({ctx['wasm_bytes'] / 1048576:.2f} MiB), "
          + ("with `envoy/demo-config.json` as it is (providers, reference policy, rate limits, audit defaults)"
             if ctx.get("config_is_committed", True) else
             "with the demo configuration as `palisade-demo render-config` renders it from the working tree "
             "(providers, reference policy, rate limits, audit defaults), **which differs from the committed "
             "`envoy/demo-config.json`**: the policy was edited since that was rendered")
          + (f", and from `BENCH_AUDIT`, `\"audit\": {ctx['audit_override']}`" if ctx.get("audit_override") else "")
          + "; the Wasm settings of `envoy/sidecar.yaml` but `failure_policy: FAIL_CLOSED`"
          + ("; every Palisade setup (c, g, cw, gw) runs this configuration but for its `customer-bulk` "
             "rule (below)" if fleet_setups else ""))
    w("- upstream: the same `direct_response` routes in every setup: `GET /api/v1/customers…` answers a "
      f"page of 100 customer records in the demo API's shape ({len(BULK_BODY):,} bytes, `{{\"items\": […]}}`), "
      f"everything else a page of 10 orders ({len(OTHER_BODY)} bytes)")
    bulk_warm = [s for s in setups if s in ("cw", "gw")]
    w(f"- each round starts fresh Envoy processes ({', '.join(setups)}, one each), runs {WARMUP} s of untimed "
      "warm-up on each (the RS256 warm request"
      + (f"; for {' and '.join(bulk_warm)} the bulk page they are measured on" if bulk_warm else "") + "), "
      "then every scenario on each of its setups, the order of setups rotating with round and scenario. "
      "Before each scenario one curl per setup (two for a token pool: its first and last token) must "
      "get the status below, and after each run the status mix counted by the wrk script must be the "
      "expected one, or the benchmark stops.")
    w("")
    w("## Setups")
    w("")
    w("| setup | what |")
    w("|---|---|")
    for s in setups:
        w(f"| {s} | {SETUP_NAMES[s]} |")
    w("")
    if fleet_setups:
        fleet_section_setup(ctx, w, fleet_setups, fleet)
    w("## Scenarios")
    w("")
    w("| scenario | request | setups: expected status |")
    w("|---|---|---|")
    for sc in scs:
        expect = ", ".join(f"{s} {sc.expect[s]}" for s in sc.setups if s in setups)
        w(f"| {sc.title} | {sc.describe(setups)} | {expect} |")
    w("")
    w(f"Tokens: minted by `palisade-demo token --count N` (TEST-ONLY keys, kids `test-rs256` / "
      f"`test-es256`, `{json.dumps(CLAIMS)}`, ttl {TOKEN_TTL} s = the demo's `max_lifetime_seconds`), "
      f"cached in `target/bench-tokens/`."
      + (f" A fresh pool is {POOL_SIZE:,} tokens with distinct `jti`; the "
         "wrk script gives each wrk thread its own slice (thread k sends tokens k, k+T, …), so a worker "
         "sees at least 5,000 distinct tokens before one comes back: more than Palisade's per-worker "
         "cache (4096 entries, FIFO) and (b)'s `jwt_cache_config` (4096 entries, LRU, per worker), so "
         "every request misses both. (b) keeps `jwt_cache_config` on in every scenario and relies on the "
         "pool being larger than its cache; its jwt_authn cache counters below show it."
         if any(sc.pool.endswith("fresh") for sc in scs) else " Every scenario here uses one warm RS256 token."))
    w("")
    if "rs256-warm" in {sc.key for sc in scs}:
        w("Why not alice reading `/api/v1/customers/42`: the demo config's `customer-bulk` rule covers "
          "`GET /api/v1/customers` *and below* (whole segments), so one identity reading its own record "
          "thousands of times a second is rate limited after 20 requests and then suspended, by design. "
          "The allowed scenarios therefore use a route no limit covers (`/api/v1/orders`, a bulk listing "
          "the data-export service may call), and the rate-limit scenario shows the limit itself.")
        w("")
    if fleet_setups:
        fleet_section_results(ctx, w, setups, scs, levels)
    for conc in levels:
        w(f"## Results, Envoy `--concurrency {conc}`")
        w("")
        w("| scenario | setup | req/s | p50 | p99 | p99.9 | status mix (all rounds) |")
        w("|---|---|---:|---:|---:|---:|---|")
        for sc in scs:
            for setup in setups:
                m = medians(runs, sc.key, setup, conc)
                if not m:
                    continue
                extra = []
                if m["errors"]:
                    extra.append("socket errors " + ", ".join(f"{k} {v}" for k, v in m["errors"].items()))
                if "jwt_cache" in m:
                    extra.append(f"jwt cache hit {m['jwt_cache']['jwt_cache_hit']:,} / miss {m['jwt_cache']['jwt_cache_miss']:,}")
                if setup in PALISADE:
                    extra.append(f"audit records {m['audit']:,}")
                mix = mix_text(m["mix"]) + ("; " + "; ".join(extra) if extra else "")
                w(f"| {sc.title} | {setup} | {m['rps']:,.0f} | {fmt_us(m['p50'])} | {fmt_us(m['p99'])} | "
                  f"{fmt_us(m['p99.9'])} | {mix} |")
        w("")
        if {"a", "b", "c"} <= set(setups):
            w("| scenario | req/s c/a | req/s c/b | p99 c/a | p99 c/b |")
            w("|---|---:|---:|---:|---:|")
            for sc in scs:
                ma, mb, mc = (medians(runs, sc.key, s, conc) for s in ("a", "b", "c"))
                if not (ma and mb and mc):
                    continue
                # The rate-limit row compares different work: (a) serves pages,
                # (b) answers 429 before RBAC, (c) 403 `suspended` before the policy.
                title = sc.title + (" (different work, see Scenarios)" if sc.key == "bulk-limited" else "")
                w(f"| {title} | {mc['rps'] / ma['rps']:.2f} | {mc['rps'] / mb['rps']:.2f} | "
                  f"{mc['p99'] / ma['p99']:.1f}× | {mc['p99'] / mb['p99']:.1f}× |")
            w("")
    w("## Memory")
    w("")
    w("Per process: VmRSS from `/proc/PID/status` and the admin `/memory` `allocated`, when ready "
      "(first round) and after load (end of the last round). Per worker = value at "
      "`--concurrency 2` − value at `--concurrency 1`.")
    w("")
    w("| setup | | RSS ready | RSS after load | allocated ready | allocated after load |")
    w("|---|---|---:|---:|---:|---:|")
    mem = ctx["memory"]
    for setup in setups:
        for conc in levels:
            m = mem.get(f"{setup} {conc}", {})
            w(f"| {setup} | {conc} worker{'s' if conc > 1 else ''} | {fmt_mib(m.get('ready', {}).get('rss'))} | "
              f"{fmt_mib(m.get('load', {}).get('rss'))} | {fmt_mib(m.get('ready', {}).get('allocated'))} | "
              f"{fmt_mib(m.get('load', {}).get('allocated'))} |")
        if 1 in levels and 2 in levels:
            def delta(phase, key):
                x = mem.get(f"{setup} 1", {}).get(phase, {}).get(key)
                y = mem.get(f"{setup} 2", {}).get(phase, {}).get(key)
                return None if x is None or y is None else y - x
            w(f"| {setup} | per worker | {fmt_delta_mib(delta('ready', 'rss'))} | {fmt_delta_mib(delta('load', 'rss'))} | "
              f"{fmt_delta_mib(delta('ready', 'allocated'))} | {fmt_delta_mib(delta('load', 'allocated'))} |")
    w("")
    w("## Start to ready")
    w("")
    w("Process start to admin `/ready` answering `LIVE`, median (min–max) over the rounds; for "
      "Palisade this includes V8 compiling the .wasm and Palisade's `on_configure` (JWKS, Rego compilation) "
      "on every worker.")
    w("")
    w("| setup | " + " | ".join(f"{c} worker{'s' if c > 1 else ''}" for c in levels) + " |")
    w("|---|" + "---:|" * len(levels))
    for setup in setups:
        cells = []
        for conc in levels:
            xs = ctx["ready"].get(f"{setup} {conc}", [])
            cells.append(f"{statistics.median(xs) * 1000:.0f} ms ({min(xs) * 1000:.0f}–{max(xs) * 1000:.0f})" if xs else "n/a")
        w(f"| {setup} | " + " | ".join(cells) + " |")
    w("")
    if {"b", "c"} <= set(setups):
        w("## What (b) does not check that (c) does")
        w("")
        w("(b) is the reference policy as far as `jwt_authn` (same JWKS, issuer, audience, 30 s clock skew, "
          "3600 s max lifetime, `payload_in_metadata`, `jwt_cache_config` 4096), `local_ratelimit` and "
          "`rbac` (one ALLOW policy per Rego `granted` rule, roles and claims read from jwt_authn's "
          "dynamic metadata) can express it. It gives the same statuses as (c) for the allowed and denied "
          "requests of this benchmark (in the rate-limit scenario (b) answers 429 where (c) cuts the "
          "response at the record budget and then suspends the caller, 403), and it does less work per "
          "request:")
        w("")
        for item in NOT_IN_B:
            if item.startswith("**Audit.**") and ctx.get("audit_override"):
                item += f" This run set `\"audit\": {ctx['audit_override']}` (`BENCH_AUDIT`): see (c)'s audit record counts."
            w(f"- {item}")
        w("")
    w("## Every run")
    w("")
    w("| workers | round | scenario | setup | req/s | p50 | p99 | p99.9 | status mix |")
    w("|---|---|---|---|---:|---:|---:|---:|---|")
    for r in runs:
        fleet_note = (f"; {r['records']:,} records" if "records" in r else "") + \
            (f"; {fleet_text(r)}" if "fleet" in r else "")
        w(f"| {r['concurrency']} | {r['round']} | {r['scenario']} | {r['setup']} | {r['rps']:,.0f} | "
          f"{fmt_us(r['latency_us']['p50'])} | {fmt_us(r['latency_us']['p99'])} | "
          f"{fmt_us(r['latency_us']['p99.9'])} | {mix_text(r['status'])}{fleet_note} |")
    notes = {s: n for s, n in ctx["log_notes"].items() if n}
    if notes:
        w("")
        w("## Log lines during the runs (Envoy's other than audit records, palisade-rls's other than "
          "start-up; first 10 per setup)")
        w("")
        w("```")
        for s, lines in notes.items():
            for line in lines:
                w(f"({s}) {line[:300]}")
        w("```")
    w("")
    return "\n".join(L)


def fleet_section_setup(ctx: dict, w, fleet_setups: list[str], fleet: dict) -> None:
    """How the global setups are set up: the rule, the service, Redis."""
    rules = fleet.get("rules", {})
    w("### The `customer-bulk` rule in each Palisade setup")
    w("")
    w("| setup | `requests` | `records` | `max_page_size` | `suspend_seconds` | `global` |")
    w("|---|---|---|---|---|---|")
    for s in ("c", "g", "cw", "gw"):
        r = rules.get(s)
        if not r:
            continue
        q, rec = r.get("requests", {}), r.get("records", {})
        page = r.get("max_page_size", {})
        w(f"| {s} | {q.get('limit', 0):,} per {q.get('period_seconds')} s, burst {q.get('burst', 0):,} | "
          f"{rec.get('limit', 0):,} per {rec.get('period_seconds')} s | {page.get('max', '–')} | "
          f"{r.get('suspend_seconds', 0)} | "
          + (f"`{json.dumps(r['global'])}`" if "global" in r else "–") + " |")
    w("")
    w(f"The service: `{fleet.get('rls', 'palisade-rls')}` (the bundled rate limit service, Limitador on "
      f"Redis), one process per global setup, `--listen 127.0.0.1:0 --redis-timeout-ms {RLS_REDIS_TIMEOUT_MS}`, "
      f"counting in its own database of one `redis-server` {fleet.get('redis_version', '')} "
      "(`--save '' --appendonly no`, loopback), emptied (`FLUSHALL`) at the start of every round. The "
      f"global setups' Envoy reaches it through a STATIC HTTP/2 cluster `{RLS_CLUSTER}` on 127.0.0.1. "
      "Its limits are the rule's own numbers, as `envoy/rls-limits.json` gives the demo's fleet (the "
      "request limit as a fixed window of `limit + burst` requests per `period_seconds`; records "
      "`charge: always`; the suspension `max_value` 0 for `suspend_seconds`, `charge: always`):")
    w("")
    for s in fleet_setups:
        cfg = fleet.get("rls_configs", {}).get(s)
        if cfg:
            w(f"- ({s}): " + "; ".join(
                f"`{l['name']}` {l['max_value']:,} per {l['seconds']} s"
                + (f", {l['charge']}" if "charge" in l else "") for l in cfg["limits"]))
    w("")
    w("palisade-rls and redis-server run on the same 2 CPUs as Envoy and wrk, so global mode's cost "
      "here includes their CPU time, taken from the Envoy under test; in a fleet they run elsewhere and "
      "a network round trip replaces the loopback one.")
    w("")


def fleet_section_results(ctx: dict, w, setups: list[str], scs: list["Scenario"], levels: list[int]) -> None:
    """Each global setup against its local twin, per scenario and level."""
    runs = ctx["runs"]
    w("## Global against local: what fleet-wide mode adds")
    w("")
    w("Medians over the rounds; ratios are global / local, from the same run. RLS calls: "
      f"requests Envoy sent on the `{RLS_CLUSTER}` cluster per wrk request (Envoy's "
      "`upstream_rq_total`); Redis commands: `total_commands_processed` per wrk request; RLS failures: "
      "Palisade's `palisade.rls_failures.*` counters (all rounds). Records: customer records the "
      "2xx bodies of each timed run delivered, local / global (each round; counted by the wrk "
      "script); in the rate-limited scenario the check before the run took one page (100) of the "
      "250-record budget, so 150 is the budget holding exactly.")
    w("")
    w("| workers | scenario | local | global | req/s local | req/s global | req/s g/l | p50 local | p50 global "
      "| p50 g/l | p99 local | p99 global | p99 g/l | RLS calls/req | Redis cmds/req | RLS failures | records |")
    w("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for conc in levels:
        for sc in scs:
            for g, local in GLOBAL_TWIN.items():
                if g not in sc.setups or local not in sc.setups or g not in setups or local not in setups:
                    continue
                ml, mg = medians(runs, sc.key, local, conc), medians(runs, sc.key, g, conc)
                if not (ml and mg):
                    continue
                f = mg.get("fleet", {})
                n = max(mg["requests"], 1)
                w(f"| {conc} | {sc.title} | {local} | {g} | {ml['rps']:,.0f} | {mg['rps']:,.0f} | "
                  f"{ratio(mg['rps'], ml['rps'])} | {fmt_us(ml['p50'])} | {fmt_us(mg['p50'])} | "
                  f"{ratio(mg['p50'], ml['p50'], '×')} | {fmt_us(ml['p99'])} | {fmt_us(mg['p99'])} | "
                  f"{ratio(mg['p99'], ml['p99'], '×')} | {rls_calls(f) / n:.2f} | "
                  f"{f.get('redis_commands', 0) / n:.1f} | {rls_failures(f)} | "
                  + (", ".join(f"{x:,}" for x in ml["records_all"]) + " / "
                     + ", ".join(f"{x:,}" for x in mg["records_all"]) if "records" in ml and "records" in mg else "–")
                  + " |")
    w("")
    w("Where the CPU goes: CPU time (user + system, from `/proc/PID/stat`; wrk's from `getrusage`) "
      "each process used during a timed run, per request, median over rounds. All of them share the "
      "machine's CPUs, so on a saturated machine a process's CPU is taken from the others.")
    w("")
    w("| workers | scenario | setup | Envoy | wrk | palisade-rls | redis-server | all |")
    w("|---|---|---|---:|---:|---:|---:|---:|")
    procs = ("envoy", "wrk", "palisade-rls", "redis-server")
    for conc in levels:
        for sc in scs:
            for g, local in GLOBAL_TWIN.items():
                if not {g, local} <= set(sc.setups) & set(setups):
                    continue
                for st in (local, g):
                    m = medians(runs, sc.key, st, conc)
                    if not m or "cpu_us" not in m:
                        continue
                    cpu = m["cpu_us"]
                    cells = [fmt_us(cpu[k]) if k in cpu else "–" for k in procs]
                    w(f"| {conc} | {sc.title} | {st} | " + " | ".join(cells) + f" | {fmt_us(sum(cpu.values()))} |")
    w("")


def nice_step(raw: float) -> float:
    """The smallest round step (1, 1.5, 2, ... 8 times a power of ten) at least `raw`."""
    if raw <= 0:
        return 1.0
    power = 10 ** int(f"{raw:e}".split("e")[1])
    return next(m * power for m in (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10) if m * power >= raw)


def plot(ctx: dict) -> str:
    """Grouped bars, one panel per metric (req/s, p99) and concurrency level."""
    runs, levels = ctx["runs"], ctx["levels"]
    setups, scs = present(ctx)
    bars = {sc.key: [st for st in sc.setups if st in setups] for sc in scs}
    panel_w, panel_h = 620, 300
    left, top, gap_x, gap_y = 70, 100, 60, 120
    width = left + len(levels) * (panel_w + gap_x)
    height = top + 2 * (panel_h + gap_y)
    s = []
    s.append(f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" font-family="Helvetica, Arial, sans-serif" font-size="12">')
    s.append(f'<rect width="{width}" height="{height}" fill="white"/>')
    title = ("Palisade on the bulk route: local (c, cw) and fleet-wide (g, gw) rate limits"
             if ctx.get("name") == "global" else
             "Envoy alone (a), native jwt_authn + local_ratelimit + rbac (b), Palisade (c)"
             + ("; bulk route: local (cw) and fleet-wide (g, gw)" if set(setups) & set(GLOBAL_TWIN) else ""))
    s.append(f'<text x="{left}" y="28" font-size="18" font-weight="bold">{html.escape(title)}</text>')
    s.append(f'<text x="{left}" y="48" fill="#555">{html.escape(ctx["started"])} UTC, '
             f'{html.escape(ctx["machine"].split(",")[0])}, Envoy {html.escape(ctx["envoy_version"])}; median of '
             f'{ctx["rounds"]} round(s) of {ctx["seconds"]} s per run; details in '
             f'{html.escape(ctx.get("name", "compare"))}.md</text>')
    lx, ly = left, 60
    for setup in setups:
        label = f"({setup}) {SETUP_NAMES[setup]}"
        if lx > left and lx + 20 + 7 * len(label) > width:
            lx, ly = left, ly + 18
        s.append(f'<rect x="{lx}" y="{ly}" width="14" height="14" fill="{COLOURS[setup]}"/>')
        s.append(f'<text x="{lx + 20}" y="{ly + 12}">{html.escape(label)}</text>')
        lx += 20 + 7 * len(label) + 24
    def k(v: float) -> str:
        return "0" if v == 0 else f"{v / 1000:.1f}k" if v >= 1000 else f"{v:.0f}"

    def ms(v: float) -> str:
        return "0" if v == 0 else f"{v / 1000:.1f}" if v >= 1000 else f"{v / 1000:.2f}"

    metrics = [("rps", "requests/s (higher is better)", k), ("p99", "p99 latency, ms (lower is better)", ms)]
    for row, (metric, title, label) in enumerate(metrics):
        for col, conc in enumerate(levels):
            x0 = left + col * (panel_w + gap_x)
            y0 = top + row * (panel_h + gap_y) + 20
            values = {(sc.key, st): (medians(runs, sc.key, st, conc) or {}).get(metric, 0)
                      for sc in scs for st in bars[sc.key]}
            step = nice_step(max(values.values() or [1]) * 1.12 / 4)
            vmax = step * 4
            s.append(f'<text x="{x0}" y="{y0 - 8}" font-size="14" font-weight="bold">{html.escape(title)}, '
                     f'--concurrency {conc}</text>')
            s.append(f'<line x1="{x0}" y1="{y0 + panel_h}" x2="{x0 + panel_w}" y2="{y0 + panel_h}" stroke="#333"/>')
            for tick in range(5):
                ty = y0 + panel_h - tick * panel_h / 4
                tv = step * tick
                s.append(f'<line x1="{x0}" y1="{ty:.1f}" x2="{x0 + panel_w}" y2="{ty:.1f}" stroke="#eee"/>')
                s.append(f'<text x="{x0 - 6}" y="{ty + 4:.1f}" text-anchor="end" fill="#555">{label(tv)}</text>')
            group_w = panel_w / len(scs)
            bar_w = group_w * 0.8 / max(len(b) for b in bars.values())
            for i, sc in enumerate(scs):
                gx = x0 + i * group_w + group_w * 0.1 + (group_w * 0.8 - bar_w * len(bars[sc.key])) / 2
                for j, st in enumerate(bars[sc.key]):
                    v = values[(sc.key, st)]
                    h = panel_h * v / vmax
                    bx = gx + j * bar_w
                    s.append(f'<rect x="{bx:.1f}" y="{y0 + panel_h - h:.1f}" width="{bar_w - 2:.1f}" '
                             f'height="{h:.1f}" fill="{COLOURS[st]}"><title>{html.escape(sc.title)} ({st}): '
                             f'{label(v)}</title></rect>')
                    s.append(f'<text x="{bx + bar_w / 2 - 1:.1f}" y="{y0 + panel_h - h - 3:.1f}" font-size="9" '
                             f'text-anchor="middle" fill="#333">{label(v)}</text>')
                words = sc.title.split(", ")
                for k, word in enumerate(words):
                    s.append(f'<text x="{x0 + (i + 0.5) * group_w:.1f}" y="{y0 + panel_h + 16 + 13 * k}" '
                             f'text-anchor="middle">{html.escape(word)}</text>')
    s.append("</svg>")
    return "\n".join(s) + "\n"


if __name__ == "__main__":
    sys.exit(main())
