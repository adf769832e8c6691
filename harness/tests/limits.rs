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
