//! Where a decision's time goes: each step of the per-request pipeline,
//! on the reference configuration (`envoy/demo-config.json`, with the
//! reference policy), natively or under wasmtime (see `bench/README.md`).
//!
//! ```text
//! cargo bench -p palisade-core --bench decision
//! ```
// A benchmark, like a test, stops loudly on a broken fixture.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use palisade_core::algorithm::Alg;
use palisade_core::audit::record::Facts;
use palisade_core::audit::writer::AuditWriter;
use palisade_core::config::Config;
use palisade_core::input;
use palisade_core::mint::{self, SigningKey};
use palisade_core::ratelimit::limits::Limits;
use palisade_core::ratelimit::store::MemoryStore;
use palisade_core::request::{Headers, Request};
use palisade_core::token::cache::TokenCache;
use palisade_core::token::remote::RemoteKeys;
use palisade_core::token::verify::verify_with;
use serde_json::json;
use std::hint::black_box;
use std::rc::Rc;
use std::time::Duration;

const CONFIG: &[u8] = include_bytes!("../../../envoy/demo-config.json");
const NOW_SECS: u64 = 1_700_000_000;
const NOW: Duration = Duration::from_secs(NOW_SECS);

fn key(alg: Alg, kid: &str, pem: &[u8]) -> SigningKey {
    SigningKey::from_pem(alg, Some(kid), pem).unwrap()
}

fn token(key: &SigningKey, n: u64) -> String {
    let extra = json!({"sub": "alice", "roles": ["customer"], "customer_id": "42", "jti": format!("bench-{n}")});
    let claims = mint::claims(
        "https://idp.palisade.test",
        "customer-api",
        NOW_SECS,
        600,
        &extra,
    );
    key.mint(&claims).unwrap()
}

fn request(token: &str, path: &str) -> Request {
    let pairs = [
        (":method", "GET"),
        (":path", path),
        (":authority", "customers.internal"),
        (":scheme", "http"),
        ("user-agent", "curl/8.5.0"),
        ("accept", "application/json"),
        ("x-request-id", "9b6d4c1e-2f0a-4b8e-9d3c-5a7f1e2b3c4d"),
        ("x-forwarded-proto", "http"),
    ];
    let mut headers: Vec<(Vec<u8>, Vec<u8>)> = pairs
        .iter()
        .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect();
    headers.push((
        b"authorization".to_vec(),
        format!("Bearer {token}").into_bytes(),
    ));
    Request {
        headers: Headers::from_pairs(headers),
        source_address: Some("10.0.0.7:51234".into()),
        destination_address: Some("10.0.0.9:8080".into()),
        protocol: Some("HTTP/1.1".into()),
        ..Request::default()
    }
}

/// The reference configuration, with request rates raised so that one
/// identity repeating a request stays allowed (the record budgets stay).
fn config() -> Config {
    let mut config: serde_json::Value = serde_json::from_slice(CONFIG).unwrap();
    for rule in config["rate_limits"].as_array_mut().unwrap() {
        rule["requests"] =
            json!({"limit": 1_000_000_000u64, "period_seconds": 1, "burst": 1_000_000});
    }
    Config::from_json(config.to_string().as_bytes()).unwrap()
}

fn benches(c: &mut Criterion) {
    let config = config();
    let rs256 = key(
        Alg::RS256,
        "test-rs256",
        include_bytes!("../../../envoy/test-keys/rs256.key.pem"),
    );
    let es256 = key(
        Alg::ES256,
        "test-es256",
        include_bytes!("../../../envoy/test-keys/es256.key.pem"),
    );
    let eddsa = key(
        Alg::EdDSA,
        "test-eddsa",
        include_bytes!("../../../envoy/test-keys/eddsa.key.pem"),
    );
    let remote = RemoteKeys::default();

    let mut verify = c.benchmark_group("verify");
    for (name, key) in [("RS256", &rs256), ("ES256", &es256), ("EdDSA", &eddsa)] {
        let token = token(key, 0);
        verify.bench_function(name, |b| {
            b.iter(|| {
                verify_with(
                    black_box(token.as_bytes()),
                    "authorization",
                    &config.providers,
                    &remote,
                    NOW,
                )
                .unwrap()
            })
        });
    }
    verify.finish();

    let rs_token = token(&rs256, 0);
    let allowed = request(&rs_token, "/api/v1/customers/42");
    let denied = request(&rs_token, "/api/v1/customers/43");
    let verified = verify_with(
        rs_token.as_bytes(),
        "authorization",
        &config.providers,
        &remote,
        NOW,
    )
    .unwrap();
    let store = Rc::new(MemoryStore::default());
    let limits = Limits::new(&config.rate_limits, store.clone());

    c.bench_function("token_cache_hit", |b| {
        let mut cache = TokenCache::new(4096);
        let key = palisade_core::token::cache::cache_key("authorization", rs_token.as_bytes());
        cache.insert(key, Rc::new(verified.clone()), NOW);
        b.iter(|| cache.get(black_box(&key), NOW).unwrap())
    });

    c.bench_function("input_build", |b| {
        b.iter(|| input::build_at(black_box(&allowed), Some(&verified), None, Some(NOW)))
    });

    assert_eq!(
        config.policy.fixed().unwrap().engine(),
        palisade_core::policy::EngineInUse::Vm
    );
    let input_allowed = input::build_at(&allowed, Some(&verified), None, Some(NOW));
    let input_denied = input::build_at(&denied, Some(&verified), None, Some(NOW));
    let mut evaluate = c.benchmark_group("policy_evaluate");
    for (name, input) in [("allow", &input_allowed), ("deny", &input_denied)] {
        evaluate.bench_function(name, |b| {
            b.iter(|| {
                config
                    .policy
                    .fixed()
                    .unwrap()
                    .evaluate(black_box(input.clone()))
                    .unwrap()
            })
        });
    }
    // The interpreter, for comparison (the filter runs the RVM).
    for (name, input) in [
        ("interpreter_allow", &input_allowed),
        ("interpreter_deny", &input_denied),
    ] {
        evaluate.bench_function(name, |b| {
            b.iter(|| {
                config
                    .policy
                    .fixed()
                    .unwrap()
                    .evaluate_interpreted(black_box(input.clone()))
                    .unwrap()
            })
        });
    }
    evaluate.finish();

    let bulk = request(&rs_token, "/api/v1/customers?limit=10");
    c.bench_function("rate_limit_check", |b| {
        // A fresh identity per iteration would grow the store; one identity
        // well inside its budget is the common case.
        b.iter_batched(
            || Limits::new(&config.rate_limits, Rc::new(MemoryStore::default())),
            |limits| limits.check(black_box(&bulk), Some(&verified), NOW).is_ok(),
            BatchSize::SmallInput,
        )
    });

    let mut cache = TokenCache::new(16);
    assert_eq!(
        config.decide(&allowed, NOW, &mut cache, &limits).reason(),
        "allowed"
    );
    assert_eq!(
        config.decide(&denied, NOW, &mut cache, &limits).reason(),
        "policy_denied"
    );
    let mut decide = c.benchmark_group("decide");
    for (name, req) in [("allow_warm", &allowed), ("deny_warm", &denied)] {
        decide.bench_function(name, |b| {
            let mut cache = TokenCache::new(4096);
            b.iter(|| config.decide(black_box(req), NOW, &mut cache, &limits))
        });
    }
    decide.finish();
    // Still allowed after every iteration: the numbers above are of allowed requests.
    assert_eq!(
        config.decide(&allowed, NOW, &mut cache, &limits).reason(),
        "allowed"
    );

    let evaluation = config.decide(&allowed, NOW, &mut TokenCache::new(16), &limits);
    c.bench_function("audit_record", |b| {
        let mut writer = AuditWriter::new(store.clone());
        b.iter(|| {
            let facts = Facts {
                decision_id: "9b6d4c1e-2f0a-4b8e-9d3c-5a7f1e2b3c4d".into(),
                timestamp: "2023-11-14T22:13:20.000000Z".into(),
                decision_path: "envoy/authz/decision".into(),
                input: evaluation.input.clone(),
                result: evaluation.result.clone(),
                decision: "allow",
                reason: "allowed".into(),
                enforced: true,
                subject: Some("alice".into()),
                method: Some("GET".into()),
                path: Some("/api/v1/customers/42".into()),
                ..Facts::default()
            };
            writer.write(
                facts.into_record(&config.audit),
                NOW,
                "2023-11-14T22:13:20.000000Z",
            )
        })
    });
}

/// A ported OPA-Envoy policy verifying its token in Rego
/// (`io.jwt.decode_verify` against a JWKS, OPA's primer adapted), next to
/// the same decision with the token verified by a provider, cached or
/// not: what the migration guide's advice rests on.
fn opa_envoy_port(c: &mut Criterion) {
    let jwks = std::str::from_utf8(include_bytes!("../../../envoy/test-keys/jwks.json")).unwrap();
    let jwks_compact = serde_json::from_str::<serde_json::Value>(jwks)
        .unwrap()
        .to_string();
    let primer = include_str!("../../../tests/opa-envoy/primer-v1-with-jwks.rego").replace(
        "\"<your OpenID Connect provider's JWKS>\"",
        &serde_json::to_string(&jwks_compact).unwrap(),
    );
    let in_rego = Config::from_json(
        json!({"policy": {"modules": {"primer.rego": primer}}})
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    let same_rules = r#"package envoy.authz
import input.attributes.request.http
default allow := false
allow if {
  input.token.payload.role == "guest"
  glob.match("/people/*", ["/"], http.path)
}
"#;
    let by_provider = Config::from_json(
        json!({
            "providers": [{
                "name": "test", "issuer": "https://idp.palisade.test",
                "audiences": ["customer-api"], "algorithms": ["RS256"],
                "jwks": serde_json::from_str::<serde_json::Value>(jwks).unwrap(),
            }],
            "policy": {"modules": {"authz.rego": same_rules}},
        })
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    let rs256 = key(
        Alg::RS256,
        "test-rs256",
        include_bytes!("../../../envoy/test-keys/rs256.key.pem"),
    );
    let claims = mint::claims(
        "https://idp.palisade.test",
        "customer-api",
        NOW_SECS,
        600,
        &json!({"sub": "alice", "role": "guest", "nbf": NOW_SECS - 60}),
    );
    let token = rs256.mint(&claims).unwrap();
    let req = request(&token, "/people/alice");
    let limits = Limits::none(Rc::new(MemoryStore::default()));
    for config in [&in_rego, &by_provider] {
        let e = config.decide(&req, NOW, &mut TokenCache::new(16), &limits);
        assert_eq!(e.reason(), "allowed");
    }
    let mut group = c.benchmark_group("opa_envoy_port");
    group.bench_function("rego_decode_verify_rs256", |b| {
        let mut cache = TokenCache::new(4096);
        b.iter(|| in_rego.decide(black_box(&req), NOW, &mut cache, &limits))
    });
    group.bench_function("provider_rs256_uncached", |b| {
        let mut cache = TokenCache::new(0);
        b.iter(|| by_provider.decide(black_box(&req), NOW, &mut cache, &limits))
    });
    group.bench_function("provider_rs256_cached", |b| {
        let mut cache = TokenCache::new(4096);
        b.iter(|| by_provider.decide(black_box(&req), NOW, &mut cache, &limits))
    });
    group.finish();
}

criterion_group!(name = decision; config = Criterion::default().measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500)); targets = benches, opa_envoy_port);
criterion_main!(decision);
