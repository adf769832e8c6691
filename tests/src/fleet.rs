//! A fleet for the fleet-wide limits' end-to-end tests (issue 10): one
//! Redis, one `palisade-rls`, one demo upstream and several Envoy sidecars
//! with the same global bulk rule, plus what those tests read and assert
//! about it.

use crate::demo_config;
use crate::envoy::{Envoy, Listener};
use crate::http::{self, Response};
use crate::rls::{self, Redis, Rls};
use crate::upstream::Upstream;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// The rule's name, in the filter and in the service's descriptors.
pub const RULE: &str = "customer-bulk";
/// The Envoy cluster of the service (HTTP/2).
pub const CLUSTER: &str = "palisade_rls";
/// `max_page_size.max`, and the page every request asks for.
pub const PAGE: u64 = 100;
/// The customers the demo API holds: offsets wrap around them.
pub const CUSTOMERS: u64 = 1000;
/// The stolen credential's `sub`.
pub const ATTACKER: &str = "data-export";
/// Another caller of the same route.
pub const BYSTANDER: &str = "reporting";

/// How a sidecar's rule talks to the service.
#[derive(Clone, Copy)]
pub struct Global {
    /// The record budget, fleet-wide (the service's limit) and per sidecar
    /// (the local limit, which keeps counting in global mode).
    pub budget: u64,
    /// `global.timeout_ms`.
    pub timeout_ms: u64,
    /// `global.on_failure`: `deny` (503) or `local` (this sidecar's limits
    /// alone).
    pub on_failure: &'static str,
}

/// The demo configuration with one global bulk rule, and a policy that lets
/// any caller with scope `customers:export` read (so the bystander can use
/// the same route as the attacker).
pub fn plugin_config(g: Global) -> Value {
    let mut config = demo_config();
    config["policy"]["decision"] = json!("data.envoy.authz.allow");
    config["policy"]["modules"] = json!({"export.rego": r#"package envoy.authz
import rego.v1
default allow := false
allow if input.token.payload.scope == "customers:export"
"#});
    config["rate_limits"] = json!([{
        "name": RULE,
        "match": {"path_prefix": "/api/v1/customers", "methods": ["GET"]},
        "key": "sub",
        "requests": {"limit": 6000, "period_seconds": 60, "burst": 1000},
        "records": {"limit": g.budget, "period_seconds": 3600, "count": {"json_array": "/items"}},
        "max_page_size": {"param": "limit", "max": PAGE},
        "suspend_seconds": 900,
        "global": {
            "cluster": CLUSTER,
            "timeout_ms": g.timeout_ms,
            "identity_key": rls::test_identity_key(),
            "on_failure": g.on_failure
        }
    }]);
    config
}

/// The service's limits for [`plugin_config`]'s rule.
pub fn rls_config(budget: u64) -> Value {
    rls::limits(vec![
        rls::limit(RULE, "requests", 6000, 60),
        rls::limit(RULE, "records", budget, 3600),
        rls::limit(RULE, "suspension", 0, 900),
    ])
}

/// One Redis, one service, one upstream and `n` Envoy processes with the
/// same configuration.
pub struct Fleet {
    pub redis: Redis,
    pub rls: Rls,
    pub up: Upstream,
    pub envoys: Vec<Envoy>,
}

impl Fleet {
    pub fn start(n: usize, g: Global, redis_timeout_ms: u64) -> Fleet {
        let redis = Redis::start();
        let rls = Rls::start(&rls_config(g.budget), &redis.url(), redis_timeout_ms);
        let up = Upstream::start();
        let envoys = (0..n)
            .map(|_| {
                Envoy::start_with_grpc_clusters(
                    up.port,
                    &[Listener::new("api", plugin_config(g))],
                    1,
                    &[],
                    &[(CLUSTER, rls.port)],
                )
            })
            .collect();
        Fleet {
            redis,
            rls,
            up,
            envoys,
        }
    }

    pub fn port(&self, i: usize) -> u16 {
        self.envoys[i % self.envoys.len()].port("api")
    }

    /// GET `path` as `sub` on sidecar `i`.
    pub fn get(&self, i: usize, sub: &str, path: &str) -> Response {
        http::get(self.port(i), path, &[("authorization", &bearer(sub))])
    }

    /// The service's count of `kind` for `sub`, read in Redis.
    pub fn counter(&self, kind: &str, sub: &str) -> Option<u64> {
        let pseudonym = rls::pseudonym(&rls::test_identity_key(), RULE, &format!("sub={sub}"));
        self.redis.counter(&format!("{RULE}-{kind}"), &pseudonym)
    }

    /// Waits up to 10 s for the service's count of `kind` for `sub` to
    /// reach `at_least`; the count then.
    pub fn wait_counter(&self, kind: &str, sub: &str, at_least: u64) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let n = self.counter(kind, sub).unwrap_or(0);
            if n >= at_least || Instant::now() > deadline {
                return n;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every sidecar's log and the service's, for a failure message.
    pub fn logs(&self) -> String {
        let mut out = format!("--- palisade-rls:\n{}", self.rls.log());
        for (i, e) in self.envoys.iter().enumerate() {
            out.push_str(&format!("--- envoy {i}:\n{}", e.log()));
        }
        out
    }
}

pub fn bearer(sub: &str) -> String {
    crate::bearer(json!({"sub": sub, "scope": "customers:export"}))
}

/// The `n`-th page of `PAGE` customers (wrapping around the table, so every
/// page is full).
pub fn page(n: u64) -> String {
    format!(
        "/api/v1/customers?limit={PAGE}&offset={}",
        (n * PAGE) % CUSTOMERS
    )
}

/// The customer records in a 200 body: its `items` when it is whole JSON,
/// else (a body cut at a budget, between two records) the records that
/// arrived, one `"email"` key each.
pub fn records(r: &Response) -> u64 {
    assert_eq!(r.status, 200, "{r:?}");
    let keys = r.body.matches("\"email\":").count() as u64;
    if let Ok(body) = serde_json::from_str::<Value>(&r.body) {
        let items = body["items"].as_array().map_or(0, Vec::len) as u64;
        assert_eq!(items, keys, "one email per record: {}", r.body);
    }
    keys
}

/// A refusal of the attacker once the budget is spent: 403 `suspended`
/// (the identity was suspended fleet-wide) or 429 `records_exhausted`
/// (nothing left, the suspension not seen yet).
pub fn is_budget_refusal(r: &Response) -> bool {
    matches!(
        (r.status, r.json()["reason"].as_str()),
        (403, Some("suspended")) | (429, Some("records_exhausted"))
    )
}

/// A fail-closed answer: 503 `rate_limit_unavailable`, no record in it.
pub fn assert_unavailable(r: &Response, what: &str) {
    assert_eq!(
        (r.status, r.json()["reason"].as_str()),
        (503, Some("rate_limit_unavailable")),
        "{what}: {r:?}"
    );
    assert!(
        !r.body.contains("\"email\""),
        "{what}: a record leaked: {r:?}"
    );
}

/// Polls sidecar `i` with the attacker's bulk request until it is served
/// (up to 20 s). Until then each answer must be the fail-closed 503 and
/// reach nothing. The served response.
pub fn wait_recovered(fleet: &Fleet, i: usize, n: u64) -> Response {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let hits = fleet.up.hits();
        let r = fleet.get(i, ATTACKER, &page(n));
        if r.status == 200 {
            return r;
        }
        assert_unavailable(&r, "while recovering");
        assert_eq!(fleet.up.hits(), hits, "a 503 reached the upstream");
        assert!(
            Instant::now() < deadline,
            "sidecar {i} not serving 20 s after the dependency came back; logs:\n{}",
            fleet.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The audit record of refusal `r` (a 503 from `envoy`) names the failed
/// call: rule, a failure among `failures`, and `refused`; the failure.
pub fn audited_failure(envoy: &Envoy, r: &Response, failures: &[&str]) -> String {
    let id = r.json()["decision_id"]
        .as_str()
        .unwrap_or_else(|| panic!("a decision id: {r:?}"))
        .to_owned();
    let d = envoy
        .decision(&id)
        .unwrap_or_else(|| panic!("no audit record {id}"));
    assert_eq!(d["reason"], "rate_limit_unavailable", "{d:#}");
    let listed = d["rate_limit_service_failures"].as_array().cloned();
    let [failure] = listed.as_deref().unwrap_or_default() else {
        panic!("one failed call on record: {d:#}");
    };
    let name = failure["failure"].as_str().unwrap_or_default();
    assert_eq!(
        (&failure["rule"], &failure["outcome"]),
        (&json!(RULE), &json!("refused")),
        "{d:#}"
    );
    assert!(
        failures.contains(&name),
        "{name} not in {failures:?}: {d:#}"
    );
    name.to_owned()
}

/// The filter's counter of failed calls to the service for `reason`
/// (`palisade.rls_failures.<reason>`, a Wasm metric: Envoy prefixes
/// `wasmcustom.`).
pub fn rls_failures(envoy: &Envoy, reason: &str) -> u64 {
    envoy.stat(&format!("wasmcustom.palisade.rls_failures.{reason}"))
}

/// Envoy's metrics about the service, for a failure message.
pub fn rls_stats(envoy: &Envoy) -> String {
    let text = envoy.prometheus();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("rls") && !l.starts_with('#') && !l.ends_with(" 0"))
        .filter(|l| !l.contains("_bucket{"))
        .collect();
    lines.join("\n")
}
