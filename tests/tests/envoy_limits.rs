//! Rate limits through real Envoy with four workers (four Wasm VMs): the
//! limit is exact per Envoy process, not per worker.

use palisade_tests::envoy::{Envoy, Listener};
use palisade_tests::http;
use palisade_tests::upstream::Upstream;
use palisade_tests::{demo_config, keys, tokens};
use serde_json::json;
use std::time::{SystemTime, UNIX_EPOCH};

fn limited_config() -> serde_json::Value {
    let mut config = demo_config();
    config["rate_limits"] = json!([{
        "name": "customer-bulk",
        "match": {"path_prefix": "/api/v1/customers", "methods": ["GET"]},
        "key": "sub",
        "requests": {"limit": 20, "period_seconds": 3600, "burst": 10},
        "max_page_size": {"param": "limit", "max": 500},
        "suspend_seconds": 900
    }]);
    config
}

fn bearer(sub: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = tokens::claims(now, &json!({"sub": sub, "scope": "customers:export"}));
    format!(
        "Bearer {}",
        tokens::key(&keys(), "rs256")
            .unwrap()
            .mint(&claims)
            .unwrap()
    )
}

#[test]
fn limits_hold_across_four_workers_and_suspend_the_hammering_identity() {
    let up = Upstream::start();
    let envoy =
        Envoy::start_with_workers(up.port, &[Listener::new("limited", limited_config())], 4);
    let port = envoy.port("limited");
    let exporter = bearer("data-export");

    // 200 requests from one identity, each on its own connection (so Envoy
    // spreads them over its four workers), from four client threads.
    let before = up.hits();
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    (0..50)
                        .map(|_| {
                            http::get(
                                port,
                                "/api/v1/customers?limit=10",
                                &[("authorization", &exporter)],
                            )
                            .status
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let admitted = statuses.iter().filter(|s| **s == 200).count() as u64;
    let reached = up.hits() - before;
    assert!(
        admitted <= 10 + 1,
        "burst 10 (+1 refill at most) but {admitted} admitted: {statuses:?}"
    );
    assert!(admitted >= 10, "the burst must be admitted: {statuses:?}");
    assert_eq!(
        reached, admitted,
        "only admitted requests reach the upstream"
    );
    assert!(
        statuses.iter().all(|s| [200, 429, 403].contains(s)),
        "{statuses:?}"
    );

    // Hammering on past the limit got the identity suspended on every covered route.
    let r = http::get(
        port,
        "/api/v1/customers/42",
        &[("authorization", &exporter)],
    );
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(r.json()["reason"], "suspended");

    // A 429 says when to come back.
    let other = bearer("reporting");
    let mut last = None;
    for _ in 0..12 {
        last = Some(http::get(
            port,
            "/api/v1/customers?limit=1",
            &[("authorization", &other)],
        ));
    }
    let r = last.unwrap();
    assert_eq!(r.status, 429, "{r:?}");
    assert!(r
        .header("retry-after")
        .is_some_and(|v| v.parse::<u64>().is_ok_and(|n| n >= 1)));
    assert_eq!(
        r.header("ratelimit-policy"),
        Some("\"customer-bulk\";q=20;w=3600")
    );

    // Page size: refused before the upstream, whoever asks.
    let before = up.hits();
    for path in [
        "/api/v1/customers?limit=100000",
        "/api/v1/customers?limit=1&limit=100000",
        "/api/v1/customers?LIMIT=5",
        "/api/v1/customers?limit=1e5",
    ] {
        let r = http::get(port, path, &[("authorization", &bearer("fresh"))]);
        assert_eq!(r.status, 400, "{path}: {r:?}");
        assert_eq!(r.json()["reason"], "page_size");
    }
    assert_eq!(
        up.hits(),
        before,
        "page-size refusals never reach the upstream"
    );

    // A bystander is unaffected.
    let r = http::get(
        port,
        "/api/v1/orders?limit=5",
        &[("authorization", &bearer("data-export-2"))],
    );
    assert_ne!(r.status, 429);
}
