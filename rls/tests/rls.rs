//! End to end: a real redis-server, the RLS in-process, a tonic client.

// Test code: a failed expectation is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use palisade_rls::proto::rate_limit_response::rate_limit::Unit;
use palisade_rls::proto::rate_limit_response::Code;
use std::time::{Duration, Instant};

const DOMAIN: &str = "palisade";
const TIMEOUT: Duration = Duration::from_millis(50);

/// `records` (charge always), `requests` (when allowed), a global limit
/// without identity, and a 300 s window.
const CONFIG: &str = r#"{
  "domain": "palisade",
  "limits": [
    {"name": "bulk-records", "match": {"limit": "customer-bulk", "kind": "records"},
     "identity": "identity", "max_value": 5, "seconds": 60, "charge": "always"},
    {"name": "bulk-requests", "match": {"limit": "customer-bulk", "kind": "requests"},
     "identity": "identity", "max_value": 5, "seconds": 60},
    {"name": "small", "match": {"limit": "small"},
     "identity": "identity", "max_value": 3, "seconds": 60},
    {"name": "global", "match": {"limit": "global"}, "max_value": 2, "seconds": 300}
  ]
}"#;

fn small(who: &str) -> palisade_rls::proto::RateLimitDescriptor {
    desc(&[("limit", "small"), ("identity", who)])
}

fn records(who: &str) -> Vec<(&'static str, String)> {
    vec![
        ("limit", "customer-bulk".to_owned()),
        ("kind", "records".to_owned()),
        ("identity", who.to_owned()),
    ]
}

fn requests(who: &str) -> Vec<(&'static str, String)> {
    vec![
        ("limit", "customer-bulk".to_owned()),
        ("kind", "requests".to_owned()),
        ("identity", who.to_owned()),
    ]
}

/// `n` calls that must each fail UNAVAILABLE (storage down or hung), with
/// how long each took.
async fn unavailable_calls(c: &mut Client, n: usize) -> Vec<(Duration, tonic::Status)> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        let status = c
            .call(request(DOMAIN, vec![small("alice")], 0))
            .await
            .expect_err("the storage is down");
        assert_eq!(
            status.code(),
            tonic::Code::Unavailable,
            "{}",
            status.message()
        );
        out.push((start.elapsed(), status));
    }
    out
}

/// Calls until one succeeds (at most 5 s: recovery must come without a
/// restart), with the failures on the way.
async fn until_ok(c: &mut Client) -> (palisade_rls::proto::RateLimitResponse, Vec<tonic::Status>) {
    let start = Instant::now();
    let mut failed = Vec::new();
    loop {
        match c.call(request(DOMAIN, vec![small("alice")], 0)).await {
            Ok(r) => return (r, failed),
            Err(s) => {
                assert!(
                    start.elapsed() < Duration::from_secs(5),
                    "no recovery: {}",
                    s.message()
                );
                failed.push(s);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

fn d(
    entries: &[(&'static str, String)],
    hits: Option<u64>,
) -> palisade_rls::proto::RateLimitDescriptor {
    let pairs: Vec<(&str, &str)> = entries.iter().map(|(k, v)| (*k, v.as_str())).collect();
    match hits {
        Some(h) => desc_hits(&pairs, h),
        None => desc(&pairs),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_then_over_the_limit() {
    let redis = Redis::start();
    let server = Server::start(CONFIG, &redis.url(), TIMEOUT).await;
    let mut c = server.client().await;

    for expected_remaining in [2, 1, 0] {
        let r = c.ok(request(DOMAIN, vec![small("alice")], 0)).await;
        assert_eq!(overall(&r), Code::Ok);
        let s = &r.statuses[0];
        assert_eq!(code(s), Code::Ok);
        assert_eq!(s.limit_remaining, expected_remaining);
        let limit = s.current_limit.as_ref().expect("current_limit");
        assert_eq!(limit.name, "small");
        assert_eq!(limit.requests_per_unit, 3);
        assert_eq!(limit.unit, Unit::Minute as i32);
        let reset = s
            .duration_until_reset
            .as_ref()
            .expect("duration_until_reset");
        assert!(
            reset.seconds <= 60 && (reset.seconds > 0 || reset.nanos > 0),
            "{reset:?}"
        );
    }
    for _ in 0..2 {
        let r = c.ok(request(DOMAIN, vec![small("alice")], 0)).await;
        assert_eq!(overall(&r), Code::OverLimit);
        assert_eq!(code(&r.statuses[0]), Code::OverLimit);
        assert_eq!(r.statuses[0].limit_remaining, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identities_have_separate_counters() {
    let redis = Redis::start();
    let server = Server::start(CONFIG, &redis.url(), TIMEOUT).await;
    let mut c = server.client().await;

    let r = c.ok(request(DOMAIN, vec![small("alice")], 3)).await;
    assert_eq!(overall(&r), Code::Ok);
    assert_eq!(r.statuses[0].limit_remaining, 0);
    let r = c.ok(request(DOMAIN, vec![small("alice")], 0)).await;
    assert_eq!(overall(&r), Code::OverLimit);

    let r = c.ok(request(DOMAIN, vec![small("bob")], 0)).await;
    assert_eq!(overall(&r), Code::Ok);
    assert_eq!(r.statuses[0].limit_remaining, 2);

    // A limit without identity is one counter for everyone.
    let g = |who: &str| desc(&[("limit", "global"), ("identity", who)]);
    assert_eq!(
        overall(&c.ok(request(DOMAIN, vec![g("alice")], 0)).await),
        Code::Ok
    );
    let r = c.ok(request(DOMAIN, vec![g("bob")], 0)).await;
    assert_eq!(overall(&r), Code::Ok);
    assert_eq!(r.statuses[0].limit_remaining, 0);
    let r = c.ok(request(DOMAIN, vec![g("carol")], 0)).await;
    assert_eq!(overall(&r), Code::OverLimit);
    // 300 s is no Envoy unit.
    let limit = r.statuses[0].current_limit.as_ref().expect("current_limit");
    assert_eq!(limit.unit, Unit::Unknown as i32);
    assert!(
        r.statuses[0]
            .duration_until_reset
            .as_ref()
            .expect("reset")
            .seconds
            <= 300
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hits_addend_request_and_descriptor_level() {
    let redis = Redis::start();
    let server = Server::start(CONFIG, &redis.url(), TIMEOUT).await;
    let mut c = server.client().await;
    let who = requests("alice");

    // Request-level: 2 of 5.
    let r = c.ok(request(DOMAIN, vec![d(&who, None)], 2)).await;
    assert_eq!((overall(&r), r.statuses[0].limit_remaining), (Code::Ok, 3));
    // Descriptor-level overrides the request's 100.
    let r = c.ok(request(DOMAIN, vec![d(&who, Some(2))], 100)).await;
    assert_eq!((overall(&r), r.statuses[0].limit_remaining), (Code::Ok, 1));
    // Request-level 2 > 1 left: over, and (when_allowed) not counted.
    let r = c.ok(request(DOMAIN, vec![d(&who, None)], 2)).await;
    assert_eq!(
        (overall(&r), r.statuses[0].limit_remaining),
        (Code::OverLimit, 1)
    );
    // Descriptor-level 0: a check that charges nothing.
    let r = c.ok(request(DOMAIN, vec![d(&who, Some(0))], 5)).await;
    assert_eq!((overall(&r), r.statuses[0].limit_remaining), (Code::Ok, 1));
    // Unset (0) request-level hits count 1.
    let r = c.ok(request(DOMAIN, vec![d(&who, None)], 0)).await;
    assert_eq!((overall(&r), r.statuses[0].limit_remaining), (Code::Ok, 0));

    // Several descriptors in one request, each with its own hits; any over
    // makes the whole answer over.
    let bob = requests("bob");
    let r = c
        .ok(request(
            DOMAIN,
            vec![d(&bob, Some(4)), d(&bob, None), small("bob")],
            1,
        ))
        .await;
    let codes: Vec<_> = r.statuses.iter().map(code).collect();
    assert_eq!(codes, [Code::Ok, Code::Ok, Code::Ok]);
    assert_eq!(r.statuses[1].limit_remaining, 0);
    let r = c
        .ok(request(DOMAIN, vec![small("bob"), d(&bob, None)], 1))
        .await;
    assert_eq!(overall(&r), Code::OverLimit);
    let codes: Vec<_> = r.statuses.iter().map(code).collect();
    assert_eq!(codes, [Code::Ok, Code::OverLimit]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn charge_always_counts_over_limit_hits() {
    let redis = Redis::start();
    let server = Server::start(CONFIG, &redis.url(), TIMEOUT).await;
    let mut c = server.client().await;
    // Same max (5) and window; only `charge` differs.
    let rec = records("alice");
    let req = requests("alice");

    for entries in [&rec, &req] {
        let r = c.ok(request(DOMAIN, vec![d(entries, Some(4))], 0)).await;
        assert_eq!((overall(&r), r.statuses[0].limit_remaining), (Code::Ok, 1));
    }
    // 3 more: over for both. `always` counted them (the counter is now 7
    // of 5, nothing left); `when_allowed` did not (4 of 5, 1 left).
    let r = c.ok(request(DOMAIN, vec![d(&rec, Some(3))], 0)).await;
    assert_eq!(
        (overall(&r), r.statuses[0].limit_remaining),
        (Code::OverLimit, 0)
    );
    let r = c.ok(request(DOMAIN, vec![d(&req, Some(3))], 0)).await;
    assert_eq!(
        (overall(&r), r.statuses[0].limit_remaining),
        (Code::OverLimit, 1)
    );
    // One more: over for `always` (8 of 5), OK for `when_allowed` (5 of 5).
    let r = c.ok(request(DOMAIN, vec![d(&rec, Some(1))], 0)).await;
    assert_eq!(overall(&r), Code::OverLimit);
    let r = c.ok(request(DOMAIN, vec![d(&req, Some(1))], 0)).await;
    assert_eq!((overall(&r), r.statuses[0].limit_remaining), (Code::Ok, 0));

    // A zero-hit check sees the overdraft of the `always` counter.
    let r = c.ok(request(DOMAIN, vec![d(&rec, Some(0))], 0)).await;
    assert_eq!(overall(&r), Code::OverLimit);
    // Another identity is untouched.
    let r = c
        .ok(request(DOMAIN, vec![d(&records("bob"), Some(5))], 0))
        .await;
    assert_eq!((overall(&r), r.statuses[0].limit_remaining), (Code::Ok, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn descriptors_without_a_limit_are_ok_and_bad_requests_are_refused() {
    let redis = Redis::start();
    let server = Server::start(CONFIG, &redis.url(), TIMEOUT).await;
    let mut c = server.client().await;

    let unmatched = [
        desc(&[("limit", "nothing-configured"), ("identity", "alice")]),
        // Matches `small` but lacks its identity entry.
        desc(&[("limit", "small")]),
        // Only part of `bulk-records`' entries.
        desc(&[("kind", "records"), ("identity", "alice")]),
    ];
    for dsc in unmatched {
        for _ in 0..5 {
            let r = c.ok(request(DOMAIN, vec![dsc.clone()], 1000)).await;
            assert_eq!(overall(&r), Code::Ok);
            assert_eq!(code(&r.statuses[0]), Code::Ok);
            assert!(r.statuses[0].current_limit.is_none());
        }
    }
    // Extra entries do not stop a match.
    let r = c
        .ok(request(
            DOMAIN,
            vec![
                desc(&[("limit", "small"), ("identity", "x"), ("path", "/a")]),
                small("x"),
            ],
            0,
        ))
        .await;
    assert_eq!(
        r.statuses[0].current_limit.as_ref().expect("limit").name,
        "small"
    );
    assert_eq!(r.statuses[1].limit_remaining, 1);

    let invalid = [
        request("other-domain", vec![small("alice")], 0),
        request(DOMAIN, vec![], 0),
        request(
            DOMAIN,
            vec![palisade_rls::proto::RateLimitDescriptor {
                limit: Some(
                    palisade_rls::proto::rate_limit_descriptor::RateLimitOverride {
                        requests_per_unit: 1_000_000,
                        unit: Unit::Second as i32,
                    },
                ),
                ..small("alice")
            }],
            0,
        ),
        request(
            DOMAIN,
            vec![palisade_rls::proto::RateLimitDescriptor {
                is_negative_hits: true,
                ..small("alice")
            }],
            0,
        ),
        request(
            DOMAIN,
            vec![desc_hits(&[("limit", "small"), ("identity", "a")], 1 << 40)],
            0,
        ),
    ];
    for req in invalid {
        let status = c.call(req).await.expect_err("refused");
        assert_eq!(
            status.code(),
            tonic::Code::InvalidArgument,
            "{}",
            status.message()
        );
    }
}

/// Redis killed: UNAVAILABLE within the deadline; restarted: OK again, with
/// the same server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_is_unavailable_within_the_timeout_then_recovers() {
    let mut redis = Redis::start();
    let server = Server::start(CONFIG, &redis.url(), TIMEOUT).await;
    let mut c = server.client().await;
    assert_eq!(
        overall(&c.ok(request(DOMAIN, vec![small("alice")], 0)).await),
        Code::Ok
    );

    redis.kill();
    let mut worst = Duration::ZERO;
    for (took, status) in unavailable_calls(&mut c, 10).await {
        worst = worst.max(took);
        assert!(
            status.message().contains("rate limit storage"),
            "{}",
            status.message()
        );
    }
    eprintln!("redis killed: worst UNAVAILABLE latency {worst:?} (timeout {TIMEOUT:?})");
    // The deadline plus scheduling slack for a loaded 2-core CI machine.
    assert!(worst < TIMEOUT + Duration::from_millis(200), "{worst:?}");

    // A descriptor without a limit needs no Redis.
    let r = c
        .ok(request(DOMAIN, vec![desc(&[("limit", "none")])], 0))
        .await;
    assert_eq!(overall(&r), Code::Ok);

    redis.restart();
    let start = Instant::now();
    let (r, failed) = until_ok(&mut c).await;
    for s in &failed {
        assert_eq!(s.code(), tonic::Code::Unavailable, "{}", s.message());
    }
    eprintln!(
        "redis restarted: OK again after {:?} and {} UNAVAILABLE",
        start.elapsed(),
        failed.len()
    );
    // The restarted Redis kept nothing (no persistence): a fresh counter.
    assert_eq!((overall(&r), r.statuses[0].limit_remaining), (Code::Ok, 2));
}

/// Redis hung (SIGSTOP: the connection stays open, nothing answers):
/// UNAVAILABLE within the deadline; resumed: OK again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_hung_is_unavailable_within_the_timeout_then_recovers() {
    let redis = Redis::start();
    let server = Server::start(CONFIG, &redis.url(), TIMEOUT).await;
    let mut c = server.client().await;
    assert_eq!(
        overall(&c.ok(request(DOMAIN, vec![small("alice")], 0)).await),
        Code::Ok
    );

    redis.pause();
    let mut worst = Duration::ZERO;
    for (took, _) in unavailable_calls(&mut c, 5).await {
        worst = worst.max(took);
        assert!(took >= TIMEOUT, "answered before the deadline: {took:?}");
    }
    eprintln!("redis hung: worst UNAVAILABLE latency {worst:?} (timeout {TIMEOUT:?})");
    assert!(worst < TIMEOUT + Duration::from_millis(200), "{worst:?}");

    redis.resume();
    let (r, _) = until_ok(&mut c).await;
    // Same Redis, same counter: the first hit and this one.
    assert_eq!((overall(&r), r.statuses[0].limit_remaining), (Code::Ok, 1));
}

/// The server starts without Redis and works once Redis is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_before_redis() {
    let mut redis = Redis::start();
    redis.kill();
    let server = Server::start(CONFIG, &redis.url(), TIMEOUT).await;
    let mut c = server.client().await;
    let status = c
        .call(request(DOMAIN, vec![small("alice")], 0))
        .await
        .expect_err("no redis yet");
    assert_eq!(status.code(), tonic::Code::Unavailable);
    redis.restart();
    let r = c.ok(request(DOMAIN, vec![small("alice")], 0)).await;
    assert_eq!((overall(&r), r.statuses[0].limit_remaining), (Code::Ok, 2));
}

/// A suspension as the filter uses it (`filter/core/src/ratelimit/global`):
/// max 0, `charge: always`, checked with zero hits on every request. Its
/// window must start at the suspending hit, not at the first check, or a
/// suspension that lands late in a window would end early.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspension_lasts_its_window_from_the_suspending_hit() {
    const SUSPENSION: &str = r#"{
      "domain": "palisade",
      "limits": [
        {"name": "suspension", "match": {"limit": "customer-bulk", "kind": "suspension"},
         "identity": "identity", "max_value": 0, "seconds": 2, "charge": "always"}
      ]
    }"#;
    let redis = Redis::start();
    let server = Server::start(SUSPENSION, &redis.url(), TIMEOUT).await;
    let mut c = server.client().await;
    let suspension = vec![
        ("limit", "customer-bulk".to_owned()),
        ("kind", "suspension".to_owned()),
        ("identity", "mallory".to_owned()),
    ];
    // Zero-hit checks for most of a window: not suspended.
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(1500) {
        let r = c
            .ok(request(DOMAIN, vec![d(&suspension, Some(0))], 0))
            .await;
        assert_eq!(overall(&r), Code::Ok);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Suspended now: one hit.
    let r = c
        .ok(request(DOMAIN, vec![d(&suspension, Some(1))], 0))
        .await;
    assert_eq!(overall(&r), Code::OverLimit);
    let suspended_at = Instant::now();
    // Still suspended 1.5 s later: past the end of a window started by the
    // first check (2 s after it), inside the one started by the hit.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let r = c
        .ok(request(DOMAIN, vec![d(&suspension, Some(0))], 0))
        .await;
    assert_eq!(overall(&r), Code::OverLimit, "ended early");
    // And over once its own window has passed.
    tokio::time::sleep(Duration::from_millis(2600).saturating_sub(suspended_at.elapsed())).await;
    let r = c
        .ok(request(DOMAIN, vec![d(&suspension, Some(0))], 0))
        .await;
    assert_eq!(overall(&r), Code::Ok);
}
