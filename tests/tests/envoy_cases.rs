//! The shared request cases through real Envoy with the real `.wasm`.
//!
//! For each case: the status, the reason (from the reply body, and from the
//! decision line Envoy logged), and whether the upstream's hit counter moved.

use palisade_tests::cases::Observed;
use palisade_tests::envoy::{Envoy, Listener};
use palisade_tests::http;
use palisade_tests::upstream::Upstream;
use palisade_tests::{all_cases, demo_config, keys, repro};
use std::time::{SystemTime, UNIX_EPOCH};

#[test]
fn shared_cases_hold_in_real_envoy() {
    let upstream = Upstream::start();
    let envoy = Envoy::start(upstream.port, &[Listener::new("cases", demo_config())]);
    let port = envoy.port("cases");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let cases = all_cases();
    assert!(!cases.is_empty(), "no case selected");

    // Send every request first; Envoy writes its log asynchronously.
    let mut sent = Vec::new();
    for case in &cases {
        let headers = case.headers(&keys(), now).unwrap();
        let header_refs: Vec<(&str, &[u8])> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_bytes()))
            .collect();
        let before = upstream.hits();
        let response = http::request(port, &case.request.method, &case.request.path, &header_refs);
        let reached = upstream.hits() > before;
        // The decision id: from the local reply, or as the upstream received it.
        // (None when Envoy itself answered: there is no decision to find.)
        let decision_id = match response.header("x-palisade-decision-id") {
            Some(id) => id.to_owned(),
            None if !reached => String::new(),
            None => upstream.app.last_request()["headers"]["x-palisade-decision-id"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        };
        let upstream_headers: Vec<(String, String)> = if reached {
            upstream.app.last_request()["headers"]
                .as_object()
                .map(|h| {
                    h.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned()))
                        .collect()
                })
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        sent.push((response, reached, decision_id, upstream_headers));
    }
    let ids: Vec<&str> = sent.iter().map(|(_, _, id, _)| id.as_str()).collect();
    let logged = envoy.wait_for_decisions(&ids);

    let mut failures = Vec::new();
    for ((case, (response, reached, _, upstream_headers)), logged) in
        cases.iter().zip(&sent).zip(&logged)
    {
        let logged_reason = logged
            .as_ref()
            .and_then(|d| d["reason"].as_str())
            .map(str::to_owned);
        let body_reason = response.json()["reason"].as_str().map(str::to_owned);
        if !reached && body_reason != logged_reason {
            failures.push(format!(
                "{}: reply says {body_reason:?} but the decision log says {logged_reason:?}",
                case.file.display()
            ));
        }
        let seen = Observed {
            status: response.status,
            reason: logged_reason,
            upstream: *reached,
            headers: response.headers.clone(),
            upstream_headers: upstream_headers.clone(),
            trap: None,
        };
        if let Err(e) = case.check(&seen, &repro(case, "envoy_cases")) {
            failures.push(e);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed in real Envoy:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
