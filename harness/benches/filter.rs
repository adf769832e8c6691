//! The filter as Envoy runs it, on wasmtime: the same `.wasm`, one
//! request at a time through the proxy-wasm ABI (headers, decision, the
//! upstream's response, the log phase with its audit record). Compare with
//! `filter/core/benches/decision.rs`, the core natively: the difference is
//! Wasm execution plus the glue's host calls.
//!
//! ```text
//! cargo build -p palisade-filter --target wasm32-wasip1 --release
//! cargo bench -p palisade-harness --bench filter
//! ```
// A benchmark, like a test, stops loudly on a broken fixture.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use criterion::{criterion_group, criterion_main, Criterion};
use palisade_core::algorithm::Alg;
use palisade_core::mint::{self, SigningKey};
use palisade_harness::host::{
    FakeClock, FilterModule, HttpRequest, SharedSpace, UpstreamResponse, Vm,
};
use serde_json::{json, Value};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Duration;

const NOW_SECS: u64 = 1_700_000_000;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The demo configuration with the reference policy; `changes` are merged
/// over its top level (`audit`) and its `policy` section (`engine`).
fn config(changes: Option<Value>) -> Vec<u8> {
    let mut config = palisade_demo::sidecar::plugin_config(&repo()).unwrap();
    for (key, value) in changes.iter().flat_map(|c| c.as_object().unwrap()) {
        match key.as_str() {
            "engine" => config["policy"]["engine"] = value.clone(),
            _ => config[key] = value.clone(),
        }
    }
    config.to_string().into_bytes()
}

fn token(alg: Alg, kid: &str, pem: &str) -> String {
    let pem = std::fs::read(repo().join("envoy/test-keys").join(pem)).unwrap();
    let key = SigningKey::from_pem(alg, Some(kid), &pem).unwrap();
    let extra = json!({"sub": "data-export", "scope": "customers:export"});
    key.mint(&mint::claims(
        "https://idp.palisade.test",
        "customer-api",
        NOW_SECS,
        600,
        &extra,
    ))
    .unwrap()
}

fn request(method: &str, path: &str, token: Option<&str>) -> HttpRequest {
    let mut headers = vec![
        (b"user-agent".to_vec(), b"wrk".to_vec()),
        (b"accept".to_vec(), b"application/json".to_vec()),
    ];
    if let Some(token) = token {
        headers.push((
            b"authorization".to_vec(),
            format!("Bearer {token}").into_bytes(),
        ));
    }
    HttpRequest {
        method: method.into(),
        path: path.into(),
        authority: "customers.internal".into(),
        scheme: "http".into(),
        headers,
        peer: "127.0.0.1:40000".into(),
        id: Some("9b6d4c1e-2f0a-4b8e-9d3c-5a7f1e2b3c4d".into()),
        ..HttpRequest::default()
    }
}

fn benches(c: &mut Criterion) {
    let module =
        FilterModule::load(&repo().join("target/wasm32-wasip1/release/palisade_filter.wasm"))
            .unwrap_or_else(|e| panic!("{e} (build the filter first)"));
    let clock = FakeClock::at(Duration::from_secs(NOW_SECS));
    let rs256 = token(Alg::RS256, "test-rs256", "rs256.key.pem");
    let es256 = token(Alg::ES256, "test-es256", "es256.key.pem");
    let mut answer = |_: &_| UpstreamResponse::default();

    c.bench_function("vm_start_and_configure", |b| {
        let config = config(None);
        b.iter(|| {
            Vm::start(
                &module,
                black_box(&config),
                clock.clone(),
                SharedSpace::new(),
            )
            .unwrap()
        })
    });

    let scenarios = [
        ("health_no_token", request("GET", "/health", None), 200),
        (
            "allow_rs256_warm",
            request("GET", "/api/v1/orders", Some(&rs256)),
            200,
        ),
        (
            "allow_es256_warm",
            request("GET", "/api/v1/orders", Some(&es256)),
            200,
        ),
        (
            "deny_rs256_warm",
            request("DELETE", "/api/v1/customers/42", Some(&rs256)),
            403,
        ),
    ];
    let mut group = c.benchmark_group("request");
    let variants = [
        (None, ""),
        (Some(json!({"audit": {"sample_allows": 0}})), "_unaudited"),
        // The same requests on regorus's interpreter instead of its RVM.
        (Some(json!({"engine": "interpreter"})), "_interpreter"),
    ];
    for (changes, suffix) in variants {
        let start = || {
            Vm::start(
                &module,
                &config(changes.clone()),
                clock.clone(),
                SharedSpace::new(),
            )
            .unwrap()
        };
        for (name, req, status) in &scenarios {
            if suffix == "_unaudited" && *status != 200 {
                continue; // denials are always recorded
            }
            if suffix == "_interpreter" && name.starts_with("allow_es256") {
                continue; // the policy's cost does not depend on the algorithm
            }
            // A VM per scenario keeps its log from growing without bound.
            let mut vm = start();
            // The first request also starts the audit chain and fills the
            // token cache; the second is the one every iteration repeats.
            vm.handle(req, &mut answer);
            let seen = vm.handle(req, &mut answer);
            assert_eq!(seen.status, *status, "{name}{suffix}: {:?}", seen.logs);
            assert_eq!(
                seen.audit_records().len(),
                usize::from(suffix != "_unaudited"),
                "{name}{suffix}: audit records"
            );
            group.bench_function(format!("{name}{suffix}"), |b| {
                b.iter(|| vm.handle(black_box(req), &mut answer).status)
            });
        }
    }
    group.finish();
}

criterion_group!(name = filter; config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_millis(500)); targets = benches);
criterion_main!(filter);
