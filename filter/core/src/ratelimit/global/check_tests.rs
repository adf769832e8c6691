use super::*;
use crate::config::raw::RawRateLimit;
use crate::request::Headers;
use palisade_rls_proto::prost::Message;
use palisade_rls_proto::rate_limit_response::rate_limit::Unit;
use palisade_rls_proto::rate_limit_response::{Code, DescriptorStatus, RateLimit};
use palisade_rls_proto::{Duration as PbDuration, RateLimitRequest, RateLimitResponse};
use serde_json::{json, Value};

const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const NOW: Duration = Duration::from_secs(1_700_000_000);

fn rule(mut j: Value) -> Rule {
    if j.get("global").is_none() {
        j["global"] = json!({"cluster": "palisade_rls", "identity_key": KEY});
    }
    let raw: RawRateLimit = serde_json::from_value(j).unwrap();
    Rule::compile(&raw, "rate_limits[0]").unwrap()
}

/// Every limit: requests, records (pages of 500), suspension.
fn bulk() -> Rule {
    rule(crate::ratelimit::global::bulk_rule_json())
}

fn requests_only() -> Rule {
    rule(json!({
        "name": "search",
        "match": {"path_prefix": "/api/v1/search"},
        "requests": {"limit": 10, "period_seconds": 1},
    }))
}

fn records_only() -> Rule {
    rule(json!({
        "name": "export",
        "match": {"path_prefix": "/api/v1/exports"},
        "records": {"limit": 1000, "period_seconds": 3600, "count": {"ndjson": true}},
    }))
}

/// The request-phase descriptors of `check`, decoded: (kind, hits, identity).
fn sent(check: &Check) -> (String, Vec<(String, Option<u64>, String)>) {
    let call = check.request_check();
    assert_eq!(call.cluster, "palisade_rls");
    let req = RateLimitRequest::decode(call.message.as_slice()).unwrap();
    assert_eq!(req.hits_addend, 0, "every descriptor carries its own hits");
    let descriptors = req
        .descriptors
        .iter()
        .map(|d| {
            let keys: Vec<&str> = d.entries.iter().map(|e| e.key.as_str()).collect();
            assert_eq!(keys, ["limit", "kind", "identity"]);
            assert_eq!(d.entries[0].value, check.rule());
            (
                d.entries[1].value.clone(),
                d.hits_addend,
                d.entries[2].value.clone(),
            )
        })
        .collect();
    (req.domain, descriptors)
}

#[test]
fn descriptors_follow_the_limit_shape() {
    let c = Check::new(&bulk(), "sub=alice").unwrap();
    let p = c.pseudonym().to_owned();
    assert_eq!(
        p,
        bulk()
            .global
            .unwrap()
            .identity_key
            .pseudonym("customer-bulk", "sub=alice")
    );
    assert_eq!(
        sent(&c),
        (
            "palisade".into(),
            vec![
                ("requests".into(), Some(1), p.clone()),
                ("records".into(), Some(0), p.clone()),
                ("suspension".into(), Some(0), p.clone()),
            ]
        )
    );
    let c = Check::new(&requests_only(), "peer=10.0.0.7").unwrap();
    let (_, d) = sent(&c);
    assert_eq!(d, [("requests".into(), Some(1), c.pseudonym().to_owned())]);
    let c = Check::new(&records_only(), "sub=alice").unwrap();
    let (_, d) = sent(&c);
    assert_eq!(d, [("records".into(), Some(0), c.pseudonym().to_owned())]);
    let suspend_only = rule(json!({
        "name": "probe",
        "match": {"path_prefix": "/"},
        "requests": {"limit": 1, "period_seconds": 1},
        "suspend_seconds": 60,
        "global": {"cluster": "palisade_rls", "domain": "edge", "identity_key": KEY},
    }));
    let c = Check::new(&suspend_only, "sub=bob").unwrap();
    let (domain, d) = sent(&c);
    assert_eq!(domain, "edge");
    let kinds: Vec<_> = d.iter().map(|(k, h, _)| (k.as_str(), *h)).collect();
    assert_eq!(kinds, [("requests", Some(1)), ("suspension", Some(0))]);
    // The identity itself never leaves.
    assert!(!String::from_utf8_lossy(&c.request_check().message).contains("bob"));
    assert_eq!(c.identity(), "sub=bob");
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

#[test]
fn checks_cover_matching_global_rules_in_order() {
    let local = rule(json!({
        "name": "local-only",
        "match": {"path_prefix": "/api"},
        "requests": {"limit": 1, "period_seconds": 1},
        "global": null,
    }));
    let everything = rule(json!({
        "name": "everything",
        "match": {"path_prefix": "/"},
        "requests": {"limit": 1000, "period_seconds": 1},
    }));
    let rules = [local, bulk(), requests_only(), everything];
    let names = |path: &str| -> Vec<String> {
        checks(&rules, &get(path, "10.0.0.7:5555"), None)
            .iter()
            .map(|c| format!("{}:{}", c.rule(), c.identity()))
            .collect()
    };
    assert_eq!(
        names("/api/v1/customers?limit=5"),
        ["customer-bulk:peer=10.0.0.7", "everything:peer=10.0.0.7"]
    );
    assert_eq!(names("/health"), ["everything:peer=10.0.0.7"]);
    assert!(checks(&rules[..1], &get("/api/x", "10.0.0.7:1"), None).is_empty());
    assert!(Check::new(&rules[0], "sub=alice").is_none());
}

/// An answer: per descriptor (code, remaining, reset seconds).
fn answer(statuses: &[(Code, u32, Option<i64>)]) -> Vec<u8> {
    let over = statuses.iter().any(|s| s.0 == Code::OverLimit);
    RateLimitResponse {
        overall_code: if over { Code::OverLimit } else { Code::Ok } as i32,
        statuses: statuses
            .iter()
            .map(|&(code, remaining, reset)| DescriptorStatus {
                code: code as i32,
                current_limit: Some(RateLimit {
                    name: "l".into(),
                    requests_per_unit: 600,
                    unit: Unit::Minute as i32,
                }),
                limit_remaining: remaining,
                duration_until_reset: reset.map(|seconds| PbDuration { seconds, nanos: 0 }),
            })
            .collect(),
    }
    .encode_to_vec()
}

use Code::{Ok as OK, OverLimit as OVER};

fn bulk_verdict(statuses: &[(Code, u32, Option<i64>)]) -> GlobalVerdict {
    Check::new(&bulk(), "sub=alice")
        .unwrap()
        .on_check_response(0, &answer(statuses), NOW)
}

#[test]
fn under_every_limit_is_allowed_with_a_lease() {
    let v = bulk_verdict(&[(OK, 42, Some(30)), (OK, 7_200, Some(100)), (OK, 0, None)]);
    assert_eq!(
        v,
        GlobalVerdict::Allowed(Grant {
            rule: "customer-bulk".into(),
            requests_remaining: Some(42),
            records_remaining: Some(7_200),
            lease: Some(Lease {
                records: 500,
                budget_bound: false
            }),
        })
    );
    assert_eq!(v.refusal_reason(), None);
    assert_eq!(v.failure_reason(), None);
    // Less left than a page: the lease is the rest of the budget.
    let v = bulk_verdict(&[(OK, 1, None), (OK, 120, None), (OK, 0, None)]);
    assert_eq!(
        v.grant().unwrap().lease,
        Some(Lease {
            records: 120,
            budget_bound: true
        })
    );
    // No page cap: the lease is all that is left.
    let v = Check::new(&records_only(), "sub=alice")
        .unwrap()
        .on_check_response(0, &answer(&[(OK, 900, None)]), NOW);
    assert_eq!(v.grant().unwrap().lease.unwrap().records, 900);
    // No records budget: no lease.
    let v = Check::new(&requests_only(), "sub=alice")
        .unwrap()
        .on_check_response(0, &answer(&[(OK, 3, None)]), NOW);
    assert_eq!(v.grant().unwrap().lease, None);
    assert_eq!(v.grant().unwrap().records_remaining, None);
}

#[test]
fn suspension_refuses_first() {
    let v = bulk_verdict(&[(OVER, 0, Some(5)), (OVER, 0, Some(9)), (OVER, 0, Some(61))]);
    assert_eq!(
        v,
        GlobalVerdict::Limited {
            denial: LimitDenial::Suspended {
                rule: "customer-bulk".into(),
                until: NOW.as_secs() + 61,
            },
            suspend: false,
        }
    );
    assert_eq!(v.refusal_reason(), Some("suspended"));
    // Without a reset time: the configured suspension, from now.
    let v = bulk_verdict(&[(OK, 5, None), (OK, 5, None), (OVER, 0, None)]);
    assert!(matches!(
        v,
        GlobalVerdict::Limited { denial: LimitDenial::Suspended { until, .. }, .. }
            if until == NOW.as_secs() + 900
    ));
}

#[test]
fn over_the_request_rate_is_rate_limited() {
    let v = bulk_verdict(&[(OVER, 0, Some(12)), (OK, 50, None), (OK, 0, None)]);
    assert_eq!(
        v,
        GlobalVerdict::Limited {
            // The service's limit (600 a minute), not the local 60.
            denial: LimitDenial::RateLimited {
                rule: "customer-bulk".into(),
                retry_after: Duration::from_secs(12),
                limit: 600,
                period: Duration::from_secs(60),
            },
            suspend: false,
        }
    );
    assert_eq!(v.refusal_reason(), Some("rate_limited"));
    // The service's window is not a fixed unit, and it sent no reset time:
    // the local quota is advertised, and its period is the wait.
    let mut odd = RateLimitResponse::decode(answer(&[(OVER, 0, None)]).as_slice()).unwrap();
    odd.statuses[0].current_limit = Some(RateLimit {
        name: "l".into(),
        requests_per_unit: 3000,
        unit: Unit::Unknown as i32,
    });
    let v = Check::new(&requests_only(), "sub=alice")
        .unwrap()
        .on_check_response(0, &odd.encode_to_vec(), NOW);
    assert_eq!(
        v,
        GlobalVerdict::Limited {
            denial: LimitDenial::RateLimited {
                rule: "search".into(),
                retry_after: Duration::from_secs(1),
                limit: 10,
                period: Duration::from_secs(1),
            },
            suspend: false,
        }
    );
    // Over the rate with the budget overspent too: refused for the rate,
    // and still suspended.
    let v = bulk_verdict(&[(OVER, 0, Some(12)), (OVER, 0, Some(40)), (OK, 0, None)]);
    assert!(matches!(
        v,
        GlobalVerdict::Limited {
            denial: LimitDenial::RateLimited { .. },
            suspend: true
        }
    ));
}

#[test]
fn a_spent_budget_is_records_exhausted_and_an_overspent_one_suspends() {
    let v = bulk_verdict(&[(OK, 10, None), (OVER, 0, Some(40)), (OK, 0, None)]);
    assert_eq!(
        v,
        GlobalVerdict::Limited {
            denial: LimitDenial::RecordsExhausted {
                rule: "customer-bulk".into(),
                retry_after: Duration::from_secs(40),
            },
            suspend: true,
        }
    );
    assert_eq!(v.refusal_reason(), Some("records_exhausted"));
    // Exactly spent (OK, 0 left): refused, not suspended, as locally.
    let v = bulk_verdict(&[(OK, 10, None), (OK, 0, None), (OK, 0, None)]);
    assert_eq!(
        v,
        GlobalVerdict::Limited {
            denial: LimitDenial::RecordsExhausted {
                rule: "customer-bulk".into(),
                retry_after: Duration::from_secs(300),
            },
            suspend: false,
        }
    );
    // A rule that does not suspend never asks to.
    let v = Check::new(&records_only(), "sub=alice")
        .unwrap()
        .on_check_response(0, &answer(&[(OVER, 0, Some(3))]), NOW);
    assert!(matches!(v, GlobalVerdict::Limited { suspend: false, .. }));
}

#[test]
fn failures_follow_on_failure_and_its_defaults() {
    let bulk = Check::new(&bulk(), "sub=alice").unwrap();
    let search = Check::new(&requests_only(), "sub=alice").unwrap();
    let failures: [(u32, &[u8], &str); 5] = [
        (14, b"", "rls_unavailable"),
        (4, b"", "rls_timeout"),
        (0, b"\x0f", "rls_unparsable"),
        (0, b"", "rls_malformed"),
        (16, b"", "rls_unauthenticated"),
    ];
    for (status, body, reason) in failures {
        // A records budget fails closed by default...
        let v = bulk.on_check_response(status, body, NOW);
        assert_eq!(v.refusal_reason(), Some(UNAVAILABLE_REASON), "{reason}");
        assert_eq!(v.failure_reason(), Some(reason));
        assert!(matches!(v, GlobalVerdict::Deny { ref rule, .. } if rule == "customer-bulk"));
        // ...a request rate falls back to the local limits.
        let v = search.on_check_response(status, body, NOW);
        assert_eq!(v.refusal_reason(), None, "{reason}");
        assert_eq!(v.failure_reason(), Some(reason));
        assert!(matches!(v, GlobalVerdict::FallBackToLocal { ref rule, .. } if rule == "search"));
    }
    // The wrong number of statuses (here two for three descriptors).
    let v = bulk.on_check_response(0, &answer(&[(OK, 1, None), (OK, 1, None)]), NOW);
    assert_eq!(v.failure_reason(), Some("rls_malformed"));
    let v = bulk.on_dispatch_failure();
    assert_eq!(
        v,
        GlobalVerdict::Deny {
            rule: "customer-bulk".into(),
            failure: RlsFailure::Dispatch
        }
    );
    assert_eq!(
        search.on_dispatch_failure().failure_reason(),
        Some("rls_dispatch_failed")
    );
}

#[test]
fn explicit_on_failure_wins_over_the_default() {
    let mut j = json!({
        "name": "export",
        "match": {"path_prefix": "/api/v1/exports"},
        "records": {"limit": 1000, "period_seconds": 3600, "count": {"ndjson": true}},
        "global": {"cluster": "palisade_rls", "on_failure": "local", "identity_key": KEY},
    });
    let c = Check::new(&rule(j.clone()), "sub=alice").unwrap();
    assert!(matches!(
        c.on_check_response(14, b"", NOW),
        GlobalVerdict::FallBackToLocal {
            failure: RlsFailure::Status(14),
            ..
        }
    ));
    j = json!({
        "name": "search",
        "match": {"path_prefix": "/api/v1/search"},
        "requests": {"limit": 10, "period_seconds": 1},
        "global": {"cluster": "palisade_rls", "on_failure": "deny", "identity_key": KEY},
    });
    let c = Check::new(&rule(j), "sub=alice").unwrap();
    assert!(matches!(
        c.on_check_response(4, b"", NOW),
        GlobalVerdict::Deny {
            failure: RlsFailure::Status(4),
            ..
        }
    ));
}

#[test]
fn several_rules_combine() {
    let allowed = |records| {
        GlobalVerdict::Allowed(Grant {
            rule: "a".into(),
            requests_remaining: None,
            records_remaining: Some(records),
            lease: Some(Lease::new(records, None)),
        })
    };
    let fallback = GlobalVerdict::FallBackToLocal {
        rule: "b".into(),
        failure: RlsFailure::Status(14),
    };
    let deny = GlobalVerdict::Deny {
        rule: "c".into(),
        failure: RlsFailure::Status(4),
    };
    let limited = bulk_verdict(&[(OK, 10, None), (OK, 0, None), (OK, 0, None)]);
    let vs = [allowed(30), fallback.clone(), allowed(20)];
    assert_eq!(first_refusal(&vs), None);
    assert_eq!(lease(&vs), Some(20));
    let vs = [allowed(30), fallback, deny.clone(), limited];
    assert_eq!(first_refusal(&vs), Some(&deny));
    assert_eq!(lease(&[deny]), None);
    assert_eq!(lease(&[]), None);
}

#[test]
fn leases_cap_at_the_page() {
    assert_eq!(
        Lease::new(10_000, Some(500)),
        Lease {
            records: 500,
            budget_bound: false
        }
    );
    assert_eq!(
        Lease::new(500, Some(500)),
        Lease {
            records: 500,
            budget_bound: true
        }
    );
    assert_eq!(
        Lease::new(7, None),
        Lease {
            records: 7,
            budget_bound: true
        }
    );
}
