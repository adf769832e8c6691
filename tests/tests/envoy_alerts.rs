//! Shipping the audit trail and alerts through real Envoy: batches reach a
//! loopback collector in OPA's upload format, one alert per suspended
//! identity reaches a loopback webhook, and a required collector that is
//! down closes personal-data routes (and only those).

use palisade_tests::collector::Collector;
use palisade_tests::envoy::{Envoy, Listener};
use palisade_tests::upstream::Upstream;
use palisade_tests::{bearer, demo_config, http};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;

#[test]
fn records_ship_to_the_collector_alerts_to_the_webhook_and_a_dead_collector_closes_pii() {
    let up = Upstream::start();
    let collector = Collector::start();
    let webhook = Collector::start();
    let mut config = demo_config();
    config["audit"] = json!({
        "personal_data": [{"path_prefix": "/api/v1/customers", "category": "customer_pii"}],
        "collector": {"cluster": "audit-collector", "batch_max": 50, "required": true},
        "alerts": {"cluster": "alerts", "path": "/hooks/palisade", "denial_spike": {"count": 5, "period_seconds": 60}}
    });
    config["rate_limits"] = json!([{
        "name": "customer-bulk",
        "match": {"path_prefix": "/api/v1/customers", "methods": ["GET"]},
        "key": "sid",
        "requests": {"limit": 600, "period_seconds": 60, "burst": 100},
        "records": {"limit": 20, "period_seconds": 300, "count": {"json_array": "/items"}},
        "suspend_seconds": 120
    }]);
    let envoy = Envoy::start_with_clusters(
        up.port,
        &[Listener::new("shipped", config)],
        1,
        &[
            ("audit-collector", collector.port),
            ("alerts", webhook.port),
        ],
    );
    let port = envoy.port("shipped");

    // Two stolen sessions of the export service page on until suspended.
    for sid in ["s1", "s2"] {
        let auth = bearer(json!({"sub": "data-export", "scope": "customers:export", "sid": sid}));
        let statuses: Vec<u16> = (0..4)
            .map(|page| {
                let path = format!("/api/v1/customers?limit=15&offset={}", page * 15);
                http::get(port, &path, &[("authorization", &auth)]).status
            })
            .collect();
        assert_eq!(statuses, [200, 200, 403, 403], "session {sid}");
    }
    let health = http::get(port, "/health", &[]);
    assert_eq!(health.status, 200);

    // One alert per suspended identity, and no more (give duplicates time to show).
    let alerts = webhook.wait_until(Duration::from_secs(10), |r| r.len() >= 2);
    std::thread::sleep(Duration::from_secs(2));
    let alerts_now = webhook.received();
    assert_eq!(alerts_now.len(), 2, "{alerts_now:#?}");
    let identities: BTreeSet<String> = alerts
        .iter()
        .map(|a| a.json()["identity"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        identities,
        BTreeSet::from(["sid=s1".to_owned(), "sid=s2".to_owned()])
    );
    for a in &alerts_now {
        assert_eq!(a.path, "/hooks/palisade");
        let alert = a.json();
        assert_eq!(alert["kind"], "identity_suspended");
        assert_eq!(alert["cause"], "records_budget_spent");
        assert_eq!(alert["rule"], "customer-bulk");
    }

    // A denial spike: mallory is refused 7 times; one alert, at the 5th.
    let mallory = bearer(json!({"sub": "mallory", "roles": ["customer"], "customer_id": "7"}));
    for _ in 0..7 {
        let r = http::get(port, "/api/v1/customers/42", &[("authorization", &mallory)]);
        assert_eq!(r.status, 403);
    }
    let all = webhook.wait_until(Duration::from_secs(10), |r| r.len() >= 3);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(webhook.received().len(), 3, "{all:#?}");
    let spike = all
        .iter()
        .map(|a| a.json())
        .find(|a| a["kind"] == "denial_spike")
        .expect("a denial_spike alert");
    assert_eq!(
        (spike["identity"].as_str(), spike["denials"].as_u64()),
        (Some("sub=mallory"), Some(5))
    );

    // Every audit record reaches the collector, gzipped JSON arrays on /logs.
    let log_ids = || -> BTreeSet<String> {
        envoy
            .audit_records()
            .iter()
            .filter_map(|r| r["hash"].as_str().map(str::to_owned))
            .collect()
    };
    let expected = log_ids();
    assert!(expected.len() >= 10, "{expected:?}");
    let shipped = collector.wait_until(Duration::from_secs(10), |batches| {
        let got: usize = batches
            .iter()
            .map(|b| b.json().as_array().map_or(0, Vec::len))
            .sum();
        got >= expected.len()
    });
    let mut hashes = BTreeSet::new();
    for batch in &shipped {
        assert_eq!(batch.path, "/logs");
        assert_eq!(batch.header("content-encoding"), Some("gzip"));
        for record in batch.json().as_array().unwrap() {
            hashes.insert(record["hash"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(
        hashes, expected,
        "the collector has exactly what Envoy's log has"
    );
    let alert_records = envoy
        .audit_records()
        .into_iter()
        .filter(|r| r["event"] == "alert")
        .count();
    assert_eq!(alert_records, 3, "alerts are in the audit trail too");

    // The collector goes down: after one failed upload, personal data is
    // refused (the upstream is not reached); other routes go on.
    collector.answer(503);
    let alice = bearer(json!({"sub": "alice", "roles": ["customer"], "customer_id": "42"}));
    let first = http::get(port, "/api/v1/customers/42", &[("authorization", &alice)]);
    assert_eq!(first.status, 200, "not known to be down yet");
    let closed = (0..50).find_map(|_| {
        std::thread::sleep(Duration::from_millis(200));
        let hits = up.hits();
        let r = http::get(port, "/api/v1/customers/42", &[("authorization", &alice)]);
        (r.status == 503).then(|| (r, hits, up.hits()))
    });
    let (r, before, after) = closed.expect("personal data closes while the collector is down");
    assert_eq!(r.json()["reason"], "audit_unavailable", "{r:?}");
    assert_eq!(before, after, "the upstream was not reached");
    assert_eq!(
        http::get(port, "/health", &[]).status,
        200,
        "other routes go on"
    );

    // Back up: the held records go out and personal data opens again.
    collector.answer(200);
    let reopened = (0..50).any(|_| {
        std::thread::sleep(Duration::from_millis(200));
        http::get(port, "/api/v1/customers/42", &[("authorization", &alice)]).status == 200
    });
    assert!(reopened, "personal data reopens once the collector answers");
    let last = envoy.audit_records();
    let want: BTreeSet<String> = last
        .iter()
        .filter_map(|r| r["hash"].as_str().map(str::to_owned))
        .collect();
    let shipped = collector.wait_until(Duration::from_secs(10), |batches| {
        let got: BTreeSet<String> = batches
            .iter()
            .flat_map(|b| b.json().as_array().cloned().unwrap_or_default())
            .filter_map(|r| r["hash"].as_str().map(str::to_owned))
            .collect();
        got.is_superset(&want)
    });
    let got: BTreeSet<String> = shipped
        .iter()
        .flat_map(|b| b.json().as_array().cloned().unwrap_or_default())
        .filter_map(|r: Value| r["hash"].as_str().map(str::to_owned))
        .collect();
    assert!(
        got.is_superset(&want),
        "records held while the collector was down are shipped after"
    );
}
