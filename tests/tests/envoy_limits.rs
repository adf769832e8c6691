//! Rate limits through real Envoy with four workers (four Wasm VMs): the
//! limit is exact per Envoy process, not per worker.

use palisade_tests::demo_config;
use palisade_tests::envoy::{Envoy, Listener};
use palisade_tests::http;
use palisade_tests::upstream::Upstream;
use serde_json::json;

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

/// `n` GETs over HTTP/2 (h2c, prior knowledge) with curl, each on its own
/// connection; the status of each. Fails unless HTTP/2 was really used.
fn h2_statuses(port: u16, auth: &str, n: usize) -> Vec<u16> {
    let url = format!("http://127.0.0.1:{port}/api/v1/customers?limit=10");
    (0..n)
        .map(|_| {
            let out = std::process::Command::new("curl")
                .args([
                    "-s",
                    "--http2-prior-knowledge",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code} %{http_version}",
                    "-H",
                ])
                .arg(format!("authorization: {auth}"))
                .arg(&url)
                .output()
                .expect("curl (installed by scripts/setup.sh)");
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let (code, version) = text.split_once(' ').unwrap_or((&text, ""));
            assert_eq!(version, "2", "not HTTP/2: {text}");
            code.parse().unwrap()
        })
        .collect()
}

fn bearer(sub: &str) -> String {
    palisade_tests::bearer(json!({"sub": sub, "scope": "customers:export"}))
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
    // Two threads use HTTP/1.1 and two HTTP/2 (h2c, curl), each request on
    // a fresh connection, so Envoy spreads them over its workers.
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let exporter = &exporter;
                s.spawn(move || {
                    if t % 2 == 0 {
                        (0..50)
                            .map(|_| {
                                http::get(
                                    port,
                                    "/api/v1/customers?limit=10",
                                    &[("authorization", exporter)],
                                )
                                .status
                            })
                            .collect::<Vec<_>>()
                    } else {
                        h2_statuses(port, exporter, 50)
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert_eq!(statuses.len(), 200);
    // Admitted by Palisade: everything it did not refuse (an upstream that
    // answers late shows up as 504, but it was admitted and reached).
    let admitted = statuses.iter().filter(|s| ![429, 403].contains(*s)).count() as u64;
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
        statuses.iter().all(|s| [200, 429, 403, 504].contains(s)),
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

/// The incident, replayed: a stolen export credential pages through the
/// customer table as fast as it can, with the largest pages allowed, from
/// four threads over a four-worker Envoy.
#[test]
fn incident_replay_stolen_credential_gets_at_most_the_record_budget() {
    const BUDGET: u64 = 300;
    let up = Upstream::start();
    let mut config = demo_config();
    config["rate_limits"] = json!([{
        "name": "customer-bulk",
        "match": {"path_prefix": "/api/v1/customers", "methods": ["GET"]},
        "key": "sub",
        "requests": {"limit": 6000, "period_seconds": 60, "burst": 1000},
        "records": {"limit": BUDGET, "period_seconds": 300, "count": {"json_array": "/items"}},
        "max_page_size": {"param": "limit", "max": 500},
        "suspend_seconds": 900
    }]);
    let envoy = Envoy::start_with_workers(up.port, &[Listener::new("bulk", config)], 4);
    let port = envoy.port("bulk");
    let stolen = bearer("data-export");

    let (received, statuses): (u64, Vec<u16>) = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4u64)
            .map(|t| {
                let stolen = &stolen;
                s.spawn(move || {
                    let (mut got, mut statuses) = (0u64, Vec::new());
                    for page in 0..5u64 {
                        let offset = (t * 5 + page) * 50;
                        let path = format!("/api/v1/customers?limit=500&offset={offset}");
                        let r = http::get(port, &path, &[("authorization", stolen)]);
                        statuses.push(r.status);
                        got += r.body.matches("\"email\"").count() as u64;
                    }
                    (got, statuses)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).fold(
            (0, Vec::new()),
            |(g, mut st), (got, s)| {
                st.extend(s);
                (g + got, st)
            },
        )
    });
    assert!(
        received <= BUDGET,
        "exfiltrated {received} records, budget {BUDGET}: {statuses:?}"
    );
    assert!(
        received >= BUDGET / 2,
        "the budget itself is served: {received}"
    );

    // The identity ends suspended, on every covered route.
    let r = http::get(port, "/api/v1/customers/7", &[("authorization", &stolen)]);
    assert_eq!(
        (r.status, r.json()["reason"].as_str()),
        (403, Some("suspended")),
        "{r:?}"
    );
    // A bystander is unaffected.
    let alice =
        palisade_tests::bearer(json!({"sub": "alice", "roles": ["customer"], "customer_id": "42"}));
    let r = http::get(port, "/api/v1/customers/42", &[("authorization", &alice)]);
    assert_eq!(r.status, 200, "{r:?}");
    // The decision log says which response was cut (Envoy writes it asynchronously).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let truncated = loop {
        let n = envoy
            .decisions()
            .into_iter()
            .filter(|d| d["truncated"] == true)
            .count();
        if n >= 1 || std::time::Instant::now() > deadline {
            break n;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(truncated >= 1, "a truncated response is recorded");
    println!("incident replay: {received} of 1000 customer records exfiltrated (budget {BUDGET}); statuses {statuses:?}");
}

/// The other two ways of counting, through real Envoy: NDJSON lines as the
/// body streams, and a count the upstream reports in a response header.
#[test]
fn records_are_counted_from_ndjson_and_from_an_upstream_header() {
    let up = Upstream::start();
    let mut config = demo_config();
    config["policy"]["decision"] = json!("data.envoy.authz.allow");
    config["policy"]["modules"] = json!({"export.rego": r#"package envoy.authz
import rego.v1
default allow := false
allow if input.token.payload.sub == "data-export"
"#});
    config["rate_limits"] = json!([
        {
            "name": "export-ndjson",
            "match": {"path_prefix": "/api/v1/exports"},
            "records": {"limit": 30, "period_seconds": 300, "count": {"ndjson": true}}
        },
        {
            "name": "orders-header",
            "match": {"path_prefix": "/api/v1/orders"},
            "records": {"limit": 40, "period_seconds": 300, "count": {"header": "x-record-count"}}
        }
    ]);
    let envoy = Envoy::start(up.port, &[Listener::new("counted", config)]);
    let port = envoy.port("counted");
    let auth = bearer("data-export");
    let get = |path: &str| http::get(port, path, &[("authorization", &auth)]);
    let lines = |body: &str| body.lines().filter(|l| l.contains("\"email\"")).count();

    // NDJSON: 20 lines, then the 10 left of the budget and a cut, then 429.
    let first = get("/api/v1/exports/customers?limit=20");
    assert_eq!((first.status, lines(&first.body)), (200, 20), "{first:?}");
    let second = get("/api/v1/exports/customers?limit=20&offset=20");
    assert_eq!(second.status, 200);
    assert_eq!(
        lines(&second.body),
        10,
        "cut at the budget: {:?}",
        second.body
    );
    assert!(
        second.body.ends_with('\n'),
        "cut between records, never inside one"
    );
    let hits = up.hits();
    let third = get("/api/v1/exports/customers?limit=20&offset=40");
    assert_eq!(
        (third.status, third.json()["reason"].as_str()),
        (429, Some("records_exhausted")),
        "{third:?}"
    );
    assert_eq!(up.hits(), hits, "the upstream was not reached");

    // Header: 25 reported and delivered; then 25 more than the 15 left are
    // refused before a byte of that body leaves, and cost nothing.
    let orders = get("/api/v1/orders?limit=25");
    assert_eq!(orders.status, 200, "{orders:?}");
    assert_eq!(orders.body.matches("\"total_cents\"").count(), 25);
    let over = get("/api/v1/orders?limit=25");
    assert_eq!(
        (over.status, over.json()["reason"].as_str()),
        (429, Some("records_exhausted")),
        "{over:?}"
    );
    assert!(
        !over.body.contains("items"),
        "no records leaked: {:?}",
        over.body
    );
    let rest = get("/api/v1/orders?limit=15");
    assert_eq!(rest.status, 200, "the 15 left can be read: {rest:?}");
    assert_eq!(rest.body.matches("\"total_cents\"").count(), 15);
    let done = get("/api/v1/orders?limit=1");
    assert_eq!(done.status, 429, "{done:?}");
}
