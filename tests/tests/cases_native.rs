//! The shared request cases, run natively against the decision core and the
//! filter's reply mapping (no wasm, no Envoy). The same files run through
//! real Envoy in `envoy_cases.rs`.

use palisade_core::config::Config;
use palisade_core::gate::Decision;
use palisade_core::ratelimit::{limits::Limits, store::MemoryStore};
use palisade_core::request::{Headers, Request};
use palisade_core::token::cache::TokenCache;
use palisade_filter::reply;
use palisade_tests::cases::Observed;
use palisade_tests::{all_cases, demo_config, keys, repro};
use std::rc::Rc;
use std::time::Duration;

const NOW: u64 = 1_700_000_000;

#[test]
fn shared_cases_hold_natively() {
    let config = Config::from_json(demo_config().to_string().as_bytes()).unwrap();
    let mut failures = Vec::new();
    let mut ran = 0;
    let mut compared = 0;
    for case in &all_cases() {
        let mut pairs = vec![
            (
                b":method".to_vec(),
                case.request.method.clone().into_bytes(),
            ),
            (b":path".to_vec(), case.request.path.clone().into_bytes()),
            (b":authority".to_vec(), b"customers.internal".to_vec()),
            (b":scheme".to_vec(), b"http".to_vec()),
        ];
        pairs.extend(
            case.headers(&keys(), NOW)
                .unwrap()
                .into_iter()
                .map(|(k, v)| (k.into_bytes(), v.into_bytes())),
        );
        let mut request = Request {
            headers: Headers::from_pairs(pairs),
            source_address: Some("127.0.0.1:40000".into()),
            ..Request::default()
        };
        ran += 1;
        // As the filter does first: a request that reads two ways is refused,
        // and client identity headers are not facts.
        if let Err(m) = config.request_headers.scrub(&mut request) {
            let seen = Observed {
                status: 400,
                reason: Some(m.reason.into()),
                upstream: false,
                headers: reply::bad_request(m.reason, &m.message, "native").headers,
                ..Observed::default()
            };
            if let Err(e) = case.check(&seen, &repro(case, "cases_native")) {
                failures.push(e);
            }
            continue;
        }
        let mut cache = TokenCache::new(16);
        let limits = Limits::new(&config.rate_limits, Rc::new(MemoryStore::default()));
        let evaluation = config.decide(&request, Duration::from_secs(NOW), &mut cache, &limits);
        // The filter evaluates on regorus's RVM; its interpreter is the
        // reference. Both must say the same on every case's input.
        if let Some(input) = &evaluation.input {
            let vm = config.policy.fixed().unwrap().evaluate(input.clone());
            let interpreted = config
                .policy
                .fixed()
                .unwrap()
                .evaluate_interpreted(input.clone());
            let agree = match (&vm, &interpreted) {
                (Ok(a), Ok(b)) => a == b,
                (Err(_), Err(_)) => true,
                _ => false,
            };
            if !agree {
                failures.push(format!(
                    "{}: the RVM and the interpreter disagree: {vm:?} vs {interpreted:?}",
                    case.file_name()
                ));
            }
            compared += 1;
        }
        let seen = match &evaluation.decision {
            Decision::Allow(directives) => {
                // What the upstream would get: the scrubbed request, the
                // policy's headers, then the verified identity.
                let mut upstream: Vec<(String, String)> = request
                    .headers
                    .iter()
                    .map(|(k, v)| (k.to_owned(), String::from_utf8_lossy(v).into_owned()))
                    .collect();
                let set = directives.request_headers_to_add.iter().cloned().chain(
                    config
                        .request_headers
                        .identity_headers(evaluation.token.as_deref()),
                );
                for (k, v) in set {
                    upstream.retain(|(n, _)| *n != k);
                    upstream.push((k, v));
                }
                Observed {
                    status: 200,
                    reason: Some("allowed".into()),
                    upstream: true,
                    upstream_headers: upstream,
                    ..Observed::default()
                }
            }
            Decision::Deny(denial) => {
                let r = reply::for_denial(denial, "native");
                Observed {
                    status: r.status,
                    reason: Some(denial.reason.to_owned()),
                    upstream: false,
                    headers: r.headers,
                    ..Observed::default()
                }
            }
        };
        if let Err(e) = case.check(&seen, &repro(case, "cases_native")) {
            failures.push(e);
        }
    }
    assert!(ran > 0, "no case selected");
    assert_eq!(
        config.policy.fixed().unwrap().engine(),
        palisade_core::policy::EngineInUse::Vm,
        "the reference policy must run on the RVM"
    );
    assert!(
        compared > ran / 2,
        "only {compared} of {ran} inputs compared"
    );
    assert!(
        failures.is_empty(),
        "{} of {ran} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
