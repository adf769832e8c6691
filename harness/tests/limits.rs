//! Rate limits in the real `.wasm`, with several VMs sharing one
//! shared-data space as Envoy's workers do, on a fake clock.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use palisade_harness::host::{FakeClock, HttpRequest, SharedSpace, UpstreamResponse, Vm};
use palisade_harness::tokens;
use serde_json::json;
use std::time::Duration;

const NOW: u64 = 1_700_000_000;

fn config() -> Vec<u8> {
    let mut c = support::demo_config();
    c["rate_limits"] = json!([{
        "name": "customer-bulk",
        "match": {"path_prefix": "/api/v1/customers", "methods": ["GET"]},
        "requests": {"limit": 60, "period_seconds": 60, "burst": 10},
        "suspend_seconds": 900
    }]);
    c.to_string().into_bytes()
}

fn request(token: &str) -> HttpRequest {
    HttpRequest {
        method: "GET".into(),
        path: "/api/v1/customers?limit=10".into(),
        authority: "customers.internal".into(),
        scheme: "http".into(),
        headers: vec![(
            b"authorization".to_vec(),
            format!("Bearer {token}").into_bytes(),
        )],
        peer: "10.0.0.9:4000".into(),
        ..HttpRequest::default()
    }
}

#[test]
fn four_vms_admit_the_burst_once_not_four_times() {
    let keys = support::repo().join("envoy/test-keys");
    let claims = tokens::claims(
        NOW,
        &json!({"sub": "data-export", "scope": "customers:export"}),
    );
    let token = tokens::key(&keys, "rs256").unwrap().mint(&claims).unwrap();
    let shared = SharedSpace::new();
    let clock = FakeClock::at(Duration::from_secs(NOW));
    let config = config();
    let admitted: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let (shared, clock, config, token) =
                    (shared.clone(), clock.clone(), config.clone(), token.clone());
                s.spawn(move || {
                    let mut vm = Vm::start(support::module(), &config, clock, shared).unwrap();
                    (0..50)
                        .filter(|_| {
                            vm.handle(&request(&token), &mut |_| UpstreamResponse::default())
                                .status
                                == 200
                        })
                        .count()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(admitted, 10, "the burst, exactly, across four VMs");

    // Time refills the budget at the configured rate, for every VM alike.
    let mut vm = Vm::start(support::module(), &config, clock.clone(), shared.clone()).unwrap();
    let x = vm.handle(&request(&token), &mut |_| UpstreamResponse::default());
    assert_eq!(
        x.decision().unwrap()["reason"],
        "suspended",
        "hammering suspended the identity"
    );
    clock.advance(Duration::from_secs(900));
    let later = tokens::claims(
        NOW + 900,
        &json!({"sub": "data-export", "scope": "customers:export"}),
    );
    let fresh = tokens::key(&keys, "rs256").unwrap().mint(&later).unwrap();
    let x = vm.handle(&request(&fresh), &mut |_| UpstreamResponse::default());
    assert_eq!(
        x.status,
        200,
        "the suspension ended and the budget refilled: {:?}",
        x.decision()
    );
}

fn anonymous(peer: &str) -> HttpRequest {
    HttpRequest {
        headers: Vec::new(),
        peer: peer.into(),
        ..request("unused")
    }
}

/// A rule that tracks at most `max_identities` callers.
fn small_table_config(max_identities: u32) -> Vec<u8> {
    let mut c = support::demo_config();
    c["rate_limits"] = json!([{
        "name": "customer-bulk",
        "match": {"path_prefix": "/api/v1/customers", "methods": ["GET"]},
        "requests": {"limit": 60, "period_seconds": 60, "burst": 3},
        "max_identities": max_identities
    }]);
    c.to_string().into_bytes()
}

/// Bytes held in shared data, over every key.
fn held(shared: &SharedSpace) -> usize {
    shared
        .keys()
        .iter()
        .map(|k| k.len() + shared.get(k).map_or(0, |(v, _)| v.len()))
        .sum()
}

#[test]
fn rotating_identities_cannot_grow_shared_memory_and_the_tick_frees_it() {
    let shared = SharedSpace::new();
    let clock = FakeClock::at(Duration::from_secs(NOW));
    let config = small_table_config(64);
    let mut vm = Vm::start(support::module(), &config, clock.clone(), shared.clone()).unwrap();
    let mut high_water = 0;
    for i in 0..3_000u32 {
        // A new anonymous caller every 100 ms: each is idle again after 1 s.
        clock.advance(Duration::from_millis(100));
        let peer = format!("10.{}.{}.{}:4000", i >> 16, (i >> 8) & 255, i & 255);
        let x = vm.handle(&anonymous(&peer), &mut |_| UpstreamResponse::default());
        let reason = x.decision().unwrap()["reason"].clone();
        assert_ne!(reason, "limit_table_full", "caller {i} found no room");
        high_water = high_water.max(held(&shared));
    }
    let keys = shared.keys();
    let tables = keys.iter().filter(|k| k.starts_with("pal:t:")).count();
    assert!(tables <= 4, "64 identities are 4 buckets of 16: {keys:?}");
    assert!(
        high_water < 4 * (16 * 64 + 64) + 256,
        "memory bounded by the table size: {high_water} bytes"
    );
    // Once everyone has gone quiet, the tick gives the memory back.
    clock.advance(Duration::from_secs(60));
    vm.tick().unwrap();
    let left: usize = keys
        .iter()
        .filter(|k| k.starts_with("pal:t:"))
        .map(|k| shared.get(k).unwrap().0.len())
        .sum();
    assert_eq!(left, 0, "stale entries swept");
}

#[test]
fn a_full_table_fails_closed_for_newcomers_only() {
    let shared = SharedSpace::new();
    let clock = FakeClock::at(Duration::from_secs(NOW));
    let config = small_table_config(16);
    let mut vm = Vm::start(support::module(), &config, clock.clone(), shared.clone()).unwrap();
    let upstream_hits = std::cell::Cell::new(0);
    let mut upstream = |_: &_| {
        upstream_hits.set(upstream_hits.get() + 1);
        UpstreamResponse::default()
    };
    for i in 0..16 {
        let x = vm.handle(&anonymous(&format!("10.0.0.{i}:1")), &mut upstream);
        assert_ne!(x.decision().unwrap()["reason"], "limit_table_full");
    }
    let before = upstream_hits.get();
    let x = vm.handle(&anonymous("10.0.9.9:1"), &mut upstream);
    assert_eq!(x.status, 503);
    assert_eq!(x.decision().unwrap()["reason"], "limit_table_full");
    assert_eq!(upstream_hits.get(), before, "the upstream was not reached");
    // Members still get their answers; after a quiet second, so does the newcomer.
    let x = vm.handle(&anonymous("10.0.0.5:1"), &mut upstream);
    assert_ne!(x.decision().unwrap()["reason"], "limit_table_full");
    clock.advance(Duration::from_secs(2));
    let x = vm.handle(&anonymous("10.0.9.9:1"), &mut upstream);
    assert_ne!(x.decision().unwrap()["reason"], "limit_table_full");
}

#[test]
fn four_vms_contending_on_one_bucket_keep_every_identity_exact() {
    // Sixteen identities in one bucket (one shared-data key), hammered from
    // four VMs at once: every write races, and each identity still gets
    // exactly its burst of 3.
    let shared = SharedSpace::new();
    let clock = FakeClock::at(Duration::from_secs(NOW));
    let config = small_table_config(16);
    let admitted: Vec<(u32, bool)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let (shared, clock, config) = (shared.clone(), clock.clone(), config.clone());
                s.spawn(move || {
                    let mut vm = Vm::start(support::module(), &config, clock, shared).unwrap();
                    let mut out = Vec::new();
                    for round in 0..10 {
                        for who in 0..16u32 {
                            let peer = format!("10.1.0.{who}:{round}");
                            let x =
                                vm.handle(&anonymous(&peer), &mut |_| UpstreamResponse::default());
                            let reason = x.decision().unwrap()["reason"].clone();
                            assert_ne!(reason, "rate_limit_contended");
                            assert_ne!(reason, "limit_table_full");
                            out.push((who, reason != "rate_limited"));
                        }
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    for who in 0..16 {
        let n = admitted.iter().filter(|(w, ok)| *w == who && *ok).count();
        assert_eq!(n, 3, "identity {who}");
    }
}

#[test]
fn a_policy_reads_usage_and_demands_step_up_before_the_budget_runs_out() {
    let mut c = support::demo_config();
    c["rate_limits"] = json!([{
        "name": "customer-bulk",
        "match": {"path_prefix": "/api/v1/customers", "methods": ["GET"]},
        "requests": {"limit": 60, "period_seconds": 60, "burst": 10},
        "records": {"limit": 100, "period_seconds": 300, "count": {"json_array": "/items"}}
    }]);
    c["policy"]["decision"] = json!("data.envoy.authz.allow");
    c["policy"]["modules"] = json!({"step_up.rego": r#"package envoy.authz
import rego.v1
default allow := false
usage := input.usage["customer-bulk"]
allow if usage.records.remaining >= 50
allow if "mfa" in input.token.payload.amr
"#});
    let config = c.to_string().into_bytes();
    let keys = support::repo().join("envoy/test-keys");
    let key = tokens::key(&keys, "rs256").unwrap();
    let plain = key
        .mint(&tokens::claims(NOW, &json!({"sub": "data-export"})))
        .unwrap();
    let stepped_up = key
        .mint(&tokens::claims(
            NOW,
            &json!({"sub": "data-export", "amr": ["pwd", "mfa"]}),
        ))
        .unwrap();
    let clock = FakeClock::at(Duration::from_secs(NOW));
    let mut vm = Vm::start(support::module(), &config, clock, SharedSpace::new()).unwrap();
    let hits = std::cell::Cell::new(0);
    let mut sixty = |_: &_| {
        hits.set(hits.get() + 1);
        let items: Vec<_> = (0..60).map(|i| json!({"id": i})).collect();
        UpstreamResponse {
            body: json!({"items": items}).to_string().into_bytes(),
            ..UpstreamResponse::default()
        }
    };
    let first = vm.handle(&request(&plain), &mut sixty);
    assert_eq!(first.status, 200, "{:?}", first.decision());
    // 40 records remain: the policy now wants a stepped-up token.
    let second = vm.handle(&request(&plain), &mut sixty);
    assert_eq!(second.status, 403, "{:?}", second.decision());
    assert_eq!(hits.get(), 1, "the upstream was not reached");
    let third = vm.handle(&request(&stepped_up), &mut sixty);
    assert_eq!(third.status, 200, "{:?}", third.decision());
    assert_eq!(
        String::from_utf8_lossy(&third.body)
            .matches("\"id\"")
            .count(),
        40,
        "and the budget still holds"
    );
}

/// Two VMs on one shared space and one fake clock: burst, refill at the
/// rate, a clock stepping backwards, and a record window's boundary, all
/// through the real `.wasm`.
#[test]
fn two_vms_on_a_fake_clock_refill_exactly_and_never_on_a_backwards_step() {
    let mut c = support::demo_config();
    c["policy"]["decision"] = json!("data.envoy.authz.allow");
    c["policy"]["modules"] =
        json!({"open.rego": "package envoy.authz\nimport rego.v1\ndefault allow := true\n"});
    c["rate_limits"] = json!([{
        "name": "bulk",
        "match": {"path_prefix": "/api/v1/customers"},
        "requests": {"limit": 60, "period_seconds": 60, "burst": 5},
        "records": {"limit": 10, "period_seconds": 60, "count": {"json_array": "/items"}}
    }]);
    let config = c.to_string().into_bytes();
    let shared = SharedSpace::new();
    // 20 s into a 60 s record window (windows are aligned to the epoch).
    let start = Duration::from_secs(NOW);
    assert_eq!(NOW % 60, 20);
    let clock = FakeClock::at(start);
    let mut vms = [
        Vm::start(support::module(), &config, clock.clone(), shared.clone()).unwrap(),
        Vm::start(support::module(), &config, clock.clone(), shared.clone()).unwrap(),
    ];
    let caller = anonymous("10.9.9.9:1");
    let no_items = |_: &_| UpstreamResponse::default();
    let statuses = |vms: &mut [Vm; 2], n: usize| -> Vec<u16> {
        (0..n)
            .map(|i| vms[i % 2].handle(&caller, &mut { no_items }).status)
            .collect()
    };
    let admitted = |s: &[u16]| s.iter().filter(|&&x| x == 200).count();

    let s = statuses(&mut vms, 8);
    assert_eq!(admitted(&s), 5, "the burst, once, across both VMs: {s:?}");
    clock.set(start + Duration::from_millis(999));
    assert_eq!(admitted(&statuses(&mut vms, 2)), 0, "not yet one interval");
    clock.set(start + Duration::from_secs(1));
    assert_eq!(admitted(&statuses(&mut vms, 2)), 1, "one per second");
    clock.set(start - Duration::from_secs(30));
    assert_eq!(
        admitted(&statuses(&mut vms, 4)),
        0,
        "a clock stepping backwards refills nothing"
    );

    // Records, for another caller (the `{}` bodies above cost one record
    // each): 6 + 4 of the 10 in this window, across both VMs, then 429 until
    // the window turns 40 s after the start.
    let caller = anonymous("10.9.9.8:1");
    let six = |_: &_| {
        let items: Vec<_> = (0..6).map(|i| json!({"id": i})).collect();
        UpstreamResponse {
            body: json!({"items": items}).to_string().into_bytes(),
            ..UpstreamResponse::default()
        }
    };
    let ids = |x: &palisade_harness::host::Exchange| {
        String::from_utf8_lossy(&x.body).matches("\"id\"").count()
    };
    clock.set(start + Duration::from_secs(10));
    let a = vms[0].handle(&caller, &mut { six });
    let b = vms[1].handle(&caller, &mut { six });
    assert_eq!((a.status, ids(&a)), (200, 6));
    assert_eq!((b.status, ids(&b)), (200, 4), "cut at the budget");
    clock.set(start + Duration::from_secs(20));
    let refused = vms[0].handle(&caller, &mut { six });
    assert_eq!(refused.status, 429);
    assert_eq!(refused.header("retry-after").as_deref(), Some("20"));
    clock.set(start + Duration::from_secs(39));
    assert_eq!(
        vms[1].handle(&caller, &mut { six }).status,
        429,
        "1 s before the boundary"
    );
    clock.set(start + Duration::from_secs(40));
    let fresh = vms[1].handle(&caller, &mut { six });
    assert_eq!(
        (fresh.status, ids(&fresh)),
        (200, 6),
        "a new window, a new budget"
    );
}

/// Two record budgets over one response: the tighter one cuts it, and the
/// looser one is charged only for what the client got.
#[test]
fn overlapping_budgets_charge_only_the_records_that_passed() {
    let mut c = support::demo_config();
    c["policy"]["decision"] = json!("data.envoy.authz.allow");
    c["policy"]["modules"] = json!({"usage.rego": "package envoy.authz\nimport rego.v1\ndefault allow := false\nallow := {\"allowed\": true, \"headers\": {\"x-usage\": json.marshal(input.usage)}}\n"});
    c["rate_limits"] = json!([
        {"name": "all-api", "match": {"path_prefix": "/api/v1"},
         "records": {"limit": 100, "period_seconds": 300, "count": {"json_array": "/items"}}},
        {"name": "customers", "match": {"path_prefix": "/api/v1/customers"},
         "records": {"limit": 5, "period_seconds": 300, "count": {"json_array": "/items"}}}
    ]);
    let config = c.to_string().into_bytes();
    let clock = FakeClock::at(Duration::from_secs(NOW));
    let mut vm = Vm::start(support::module(), &config, clock, SharedSpace::new()).unwrap();
    let eight = |_: &_| {
        let items: Vec<_> = (0..8).map(|i| json!({"id": i})).collect();
        UpstreamResponse {
            body: json!({"items": items}).to_string().into_bytes(),
            ..UpstreamResponse::default()
        }
    };
    let caller = anonymous("10.7.7.7:1");
    let first = vm.handle(&caller, &mut { eight });
    assert_eq!(
        String::from_utf8_lossy(&first.body)
            .matches("\"id\"")
            .count(),
        5
    );
    assert_eq!(
        first.decision().unwrap()["records"],
        5,
        "the records returned, not a sum"
    );
    let second = vm.handle(
        &HttpRequest {
            path: "/api/v1/orders".into(),
            ..caller.clone()
        },
        &mut { eight },
    );
    let usage: serde_json::Value =
        serde_json::from_str(&second.upstream_request.unwrap().header("x-usage").unwrap()).unwrap();
    assert_eq!(
        usage["all-api"]["records"]["spent"], 5,
        "charged for the 5 delivered, not 8: {usage}"
    );
}

#[test]
fn a_fleet_wide_rule_without_its_service_fails_closed_and_names_why() {
    // The harness has no rate limit service (it refuses gRPC calls as Envoy
    // refuses one to a missing cluster): a fleet-wide records budget must
    // then refuse, not serve records per process.
    let keys = support::repo().join("envoy/test-keys");
    let claims = tokens::claims(
        NOW,
        &json!({"sub": "data-export", "scope": "customers:export"}),
    );
    let token = tokens::key(&keys, "rs256").unwrap().mint(&claims).unwrap();
    let mut c = support::demo_config();
    c["rate_limits"][0]["global"] = json!({
        "cluster": "palisade_rls",
        "identity_key": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
    });
    let clock = FakeClock::at(Duration::from_secs(NOW));
    let mut vm = Vm::start(
        support::module(),
        c.to_string().as_bytes(),
        clock,
        SharedSpace::new(),
    )
    .unwrap();
    let mut reached = false;
    let x = vm.handle(&request(&token), &mut |_| {
        reached = true;
        UpstreamResponse::default()
    });
    assert_eq!(x.status, 503, "{}", String::from_utf8_lossy(&x.body));
    assert_eq!(x.json()["reason"], "rate_limit_unavailable");
    assert!(!reached, "the upstream must not be reached");
    let record = x.decision().unwrap();
    assert_eq!(record["reason"], "rate_limit_unavailable");
    assert_eq!(
        record["rate_limit_service_failures"],
        json!([{"rule": "customer-bulk", "failure": "rls_dispatch_failed", "outcome": "refused"}])
    );
    // A route no fleet-wide rule covers is not affected.
    let mut health = request(&token);
    health.path = "/health".into();
    assert_eq!(
        vm.handle(&health, &mut |_| UpstreamResponse::default())
            .status,
        200
    );
}
