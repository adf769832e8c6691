use super::*;
use crate::config::raw::RawRateLimit;
use crate::ratelimit::store::MemoryStore;
use crate::request::Headers;

const T0: u64 = 1_700_000_000;

fn rule(json: serde_json::Value) -> Rule {
    let raw: RawRateLimit = serde_json::from_value(json).unwrap();
    Rule::compile(&raw, "rate_limits[0]").unwrap()
}

fn bulk() -> Rule {
    rule(serde_json::json!({
        "name": "bulk",
        "match": {"path_prefix": "/api/v1/customers", "methods": ["GET"]},
        "requests": {"limit": 5, "period_seconds": 60, "burst": 2},
        "max_page_size": {"param": "limit", "max": 500},
        "suspend_seconds": 900,
    }))
}

fn get(path: &str, peer: &str) -> Request {
    Request {
        headers: Headers::from_pairs([
            (b":method".to_vec(), b"GET".to_vec()),
            (b":path".to_vec(), path.as_bytes().to_vec()),
        ]),
        source_address: Some(peer.into()),
        ..Request::default()
    }
}

fn at(secs: u64) -> Duration {
    Duration::from_secs(secs)
}

#[test]
fn unmatched_requests_pass_untouched() {
    let limits = Limits::new(&[bulk()], Rc::new(MemoryStore::default()));
    for _ in 0..10 {
        assert!(limits
            .check(&get("/api/v1/orders", "1.1.1.1:1"), None, at(T0))
            .is_ok());
    }
}

#[test]
fn page_size_is_checked_before_counting() {
    let limits = Limits::new(&[bulk()], Rc::new(MemoryStore::default()));
    let denial = limits
        .check(
            &get("/api/v1/customers?limit=100000", "1.1.1.1:1"),
            None,
            at(T0),
        )
        .unwrap_err();
    assert_eq!(denial.reason(), "page_size");
}

#[test]
fn over_the_rate_is_limited_with_retry_after() {
    let limits = Limits::new(&[bulk()], Rc::new(MemoryStore::default()));
    let r = get("/api/v1/customers", "1.1.1.1:1");
    assert!(limits.check(&r, None, at(T0)).is_ok());
    assert!(limits.check(&r, None, at(T0)).is_ok());
    match limits.check(&r, None, at(T0)).unwrap_err() {
        LimitDenial::RateLimited {
            retry_after, limit, ..
        } => {
            assert_eq!(limit, 5);
            assert!(retry_after > Duration::ZERO && retry_after <= Duration::from_secs(12));
        }
        other => panic!("{other:?}"),
    }
    assert!(
        limits
            .check(&get("/api/v1/customers", "2.2.2.2:1"), None, at(T0))
            .is_ok(),
        "others unaffected"
    );
}

#[test]
fn hammering_past_the_limit_suspends_on_every_covered_route() {
    let limits = Limits::new(&[bulk()], Rc::new(MemoryStore::default()));
    let r = get("/api/v1/customers", "6.6.6.6:1");
    let reasons: Vec<&str> = (0..12)
        .map(|_| {
            limits
                .check(&r, None, at(T0))
                .err()
                .map_or("ok", |d| d.reason())
        })
        .collect();
    assert_eq!(&reasons[..2], ["ok", "ok"]);
    assert!(
        reasons[2..7].iter().all(|r| *r == "rate_limited"),
        "{reasons:?}"
    );
    assert!(
        reasons[7..].iter().all(|r| *r == "suspended"),
        "{reasons:?}"
    );
    let suspensions = limits.take_suspensions();
    assert_eq!(
        suspensions.len(),
        1,
        "one suspension, reported once: {suspensions:?}"
    );
    assert_eq!(suspensions[0].cause, "request_limit_hammered");
    assert_eq!(suspensions[0].until, T0 + 900);
    assert!(limits.take_suspensions().is_empty());
    let one = get("/api/v1/customers/42", "6.6.6.6:1");
    assert_eq!(
        limits.check(&one, None, at(T0 + 600)).unwrap_err().reason(),
        "suspended"
    );
    assert!(
        limits.check(&one, None, at(T0 + 900)).is_ok(),
        "the suspension ends"
    );
}

#[test]
fn usage_reports_what_is_spent_and_what_remains() {
    let r = rule(serde_json::json!({
        "name": "bulk",
        "match": {"path_prefix": "/api/v1/customers"},
        "requests": {"limit": 5, "period_seconds": 60, "burst": 3},
        "records": {"limit": 10, "period_seconds": 300, "count": {"json_array": "/items"}},
    }));
    let limits = Limits::new(&[r], Rc::new(MemoryStore::default()));
    let req = get("/api/v1/customers", "1.1.1.1:1");
    let (usage, mut meters) = limits.check(&req, None, at(T0)).unwrap();
    let u = &usage["bulk"];
    assert_eq!(u["identity"], Value::from("peer=1.1.1.1"));
    let requests = &u["requests"];
    assert_eq!(requests["limit"], Value::from(5u32));
    assert_eq!(requests["burst"], Value::from(3u32));
    assert_eq!(requests["spent"], Value::from(1u32), "this request counts");
    assert_eq!(requests["remaining"], Value::from(2u32));
    assert_eq!(u["records"]["spent"], Value::from(0u64));
    assert_eq!(u["records"]["remaining"], Value::from(10u64));
    meters[0].on_body(br#"{"items":[1,2,3,4]}"#, limits.store(), at(T0));
    let (usage, _) = limits.check(&req, None, at(T0)).unwrap();
    assert_eq!(usage["bulk"]["requests"]["remaining"], Value::from(1u32));
    assert_eq!(usage["bulk"]["records"]["spent"], Value::from(4u64));
    assert_eq!(usage["bulk"]["records"]["remaining"], Value::from(6u64));
    // One interval (12 s) later one request has refilled; this one spends it.
    let (usage, _) = limits.check(&req, None, at(T0 + 12)).unwrap();
    assert_eq!(usage["bulk"]["requests"]["remaining"], Value::from(1u32));
    // A minute of quiet refills the burst.
    let (usage, _) = limits.check(&req, None, at(T0 + 72)).unwrap();
    assert_eq!(usage["bulk"]["requests"]["remaining"], Value::from(2u32));
}

#[test]
fn a_full_identity_table_refuses_newcomers_not_members() {
    let mut r = bulk();
    r.max_identities = 16; // one bucket
    let limits = Limits::new(&[r], Rc::new(MemoryStore::default()));
    for i in 0..16 {
        let req = get("/api/v1/customers", &format!("10.0.0.{i}:1"));
        assert!(limits.check(&req, None, at(T0)).is_ok(), "{i}");
    }
    let newcomer = get("/api/v1/customers", "10.0.1.1:1");
    assert_eq!(
        limits.check(&newcomer, None, at(T0)).unwrap_err().reason(),
        "limit_table_full"
    );
    let member = get("/api/v1/customers", "10.0.0.3:1");
    assert!(limits.check(&member, None, at(T0)).is_ok());
    // Idle entries are swept; then there is room again.
    assert_eq!(limits.sweep(at(T0 + 60), 1), 16);
    assert!(limits.check(&newcomer, None, at(T0 + 60)).is_ok());
}

#[test]
fn a_spent_record_budget_refuses_and_suspends() {
    let r = rule(serde_json::json!({
        "name": "bulk",
        "match": {"path_prefix": "/api/v1/customers"},
        "records": {"limit": 3, "period_seconds": 300, "count": {"json_array": "/items"}},
        "suspend_seconds": 900,
    }));
    let limits = Limits::new(&[r], Rc::new(MemoryStore::default()));
    let req = get("/api/v1/customers", "7.7.7.7:1");
    let (_, mut meters) = limits.check(&req, None, at(T0)).unwrap();
    let action = meters[0].on_body(br#"{"items":[1,2,3,4,5]}"#, limits.store(), at(T0));
    assert!(matches!(
        action,
        crate::ratelimit::meter::BodyAction::Truncate(_)
    ));
    assert!(meters[0].truncated());
    // Without suspension, the next request is told when the budget refills...
    let denial = limits.check(&req, None, at(T0)).unwrap_err();
    assert_eq!(denial.reason(), "records_exhausted");
    // ...and spending the budget suspends when the rule says so.
    limits.budget_spent(&meters[0], at(T0));
    assert_eq!(limits.take_suspensions()[0].cause, "records_budget_spent");
    limits.budget_spent(&meters[0], at(T0));
    assert!(limits.take_suspensions().is_empty(), "not twice");
    assert_eq!(
        limits.check(&req, None, at(T0)).unwrap_err().reason(),
        "suspended"
    );
}
