//! Path and header tricks through real Envoy.
//!
//! Each trick is sent twice: to a listener set up as the README requires
//! (Envoy normalizes first, the filter checks what is left), and to one
//! without Envoy's normalization, where the filter is the only wall. Both
//! must refuse without the upstream seeing the request; on the raw
//! listener the refusal must be the filter's, with its reason in the
//! reply and in the audit record.

use palisade_tests::demo_config;
use palisade_tests::envoy::{Envoy, Listener};
use palisade_tests::http::{self, Response};
use palisade_tests::upstream::Upstream;
use serde_json::json;

fn alice() -> String {
    palisade_tests::bearer(json!({"sub": "alice", "roles": ["customer"], "customer_id": "42"}))
}

/// Alice (customer 42) reaching for customer 43 through a path trick.
const TRICKS: &[(&str, &str)] = &[
    ("/api/v1/customers/42/..%2F43", "path_encoded_slash"),
    ("/api/v1/customers/42/..%2f43", "path_encoded_slash"),
    ("/api/v1/customers/42%5C..%5C43", "path_encoded_slash"),
    ("/api/v1/customers/42\\..\\43", "path_backslash"),
    ("/api/v1/customers/42%00", "path_control_byte"),
    ("/api/v1/customers/42/%252e%252e/43", "path_double_encoded"),
    (
        "/api/v1/customers/42/%25%32%65%25%32%65/43",
        "path_double_encoded",
    ),
    ("/api/v1/customers/43%3Bx=42", "path_parameter"),
    ("/api/v1/customers/42/../43", "path_dot_segment"),
    ("/api/v1/customers/42/%2e%2e/43", "path_dot_segment"),
    ("/api/v1/customers/42/.%2E/43", "path_dot_segment"),
    ("/api/v1/customers/./43", "path_dot_segment"),
    ("/api/v1//customers/43", "path_empty_segment"),
    ("/api/v1/customers/43;x=42", "path_parameter"),
    ("/api/v1/customers/42;/../43", "path_parameter"),
    ("/api/v1/customers/42/%zz", "path_bad_escape"),
];

fn send(up: &Upstream, port: u16, path: &str, headers: &[(&str, &[u8])]) -> (Response, bool) {
    let before = up.hits();
    let r = http::request(port, "GET", path, headers);
    (r, up.hits() > before)
}

#[test]
fn path_tricks_never_reach_the_upstream() {
    let up = Upstream::start();
    let envoy = Envoy::start(
        up.port,
        &[
            Listener::new("shipped", demo_config()),
            Listener::new("raw", demo_config()).raw_paths(),
        ],
    );
    let auth = alice();
    let headers: &[(&str, &[u8])] = &[("authorization", auth.as_bytes())];

    // The listeners work: Alice reads her own record through both.
    for listener in ["shipped", "raw"] {
        let (r, reached) = send(&up, envoy.port(listener), "/api/v1/customers/42", headers);
        assert_eq!((r.status, reached), (200, true), "{listener}: {}", r.body);
    }

    let mut failures = Vec::new();
    let mut ids = Vec::new();
    for (path, reason) in TRICKS {
        // The filter alone: 400 with the named reason.
        let (r, reached) = send(&up, envoy.port("raw"), path, headers);
        let said = r.json()["reason"].as_str().unwrap_or_default().to_owned();
        if r.status != 400 || reached || said != *reason {
            failures.push(format!(
                "raw {path}: expected 400 {reason}, upstream untouched; got {} {said:?}, upstream reached: {reached}",
                r.status
            ));
        }
        if let Some(id) = r.header("x-palisade-decision-id") {
            ids.push((id.to_owned(), *reason, *path));
        }
        // Envoy and the filter together: refused, by one or the other (a
        // dot segment Envoy resolves leaves a path the policy denies).
        let (r, reached) = send(&up, envoy.port("shipped"), path, headers);
        if ![400, 403].contains(&r.status) || reached {
            failures.push(format!(
                "shipped {path}: expected a refusal, upstream untouched; got {} ({}), upstream reached: {reached}",
                r.status,
                r.body
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Every refusal by the filter is in the audit trail with its reason.
    let wanted: Vec<&str> = ids.iter().map(|(id, _, _)| id.as_str()).collect();
    let logged = envoy.wait_for_decisions(&wanted);
    for ((id, reason, path), record) in ids.iter().zip(logged) {
        let record = record.unwrap_or_else(|| panic!("no audit record for {path} ({id})"));
        assert_eq!(record["reason"], *reason, "{path}");
        assert_eq!(record["http_status"], 400, "{path}");
    }
    assert_eq!(ids.len(), TRICKS.len(), "every raw refusal carries its id");
}

#[test]
fn ambiguous_security_headers_are_refused() {
    let up = Upstream::start();
    let envoy = Envoy::start(up.port, &[Listener::new("gate", demo_config())]);
    let port = envoy.port("gate");
    let auth = alice();
    let cases: &[&[(&str, &[u8])]] = &[
        &[
            ("content-type", b"application/json"),
            ("content-type", b"text/plain"),
        ],
        &[("content-type", b"application/json, text/plain")],
        &[("x-request-id", b"a"), ("x-request-id", b"b")],
    ];
    for extra in cases {
        let mut headers: Vec<(&str, &[u8])> = vec![("authorization", auth.as_bytes())];
        headers.extend_from_slice(extra);
        let (r, reached) = send(&up, port, "/api/v1/customers/42", &headers);
        assert_eq!(r.status, 400, "{extra:?}: {}", r.body);
        assert!(!reached, "{extra:?} reached the upstream");
        assert_eq!(r.json()["reason"], "ambiguous_header", "{extra:?}");
    }
    // All values of a repeated ordinary header are visible to the policy,
    // not only the first.
    let (r, reached) = send(
        &up,
        port,
        "/api/v1/customers/42",
        &[
            ("authorization", auth.as_bytes()),
            ("accept", b"text/csv"),
            ("accept", b"application/json"),
        ],
    );
    assert_eq!((r.status, reached), (200, true));
    let id = r.header("x-palisade-decision-id").map(str::to_owned);
    let id = id.unwrap_or_else(|| {
        up.app.last_request()["headers"]["x-palisade-decision-id"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    });
    let record = envoy.wait_for_decisions(&[&id]).remove(0).expect("record");
    assert_eq!(
        record["input"]["attributes"]["request"]["http"]["headers"]["accept"],
        "text/csv,application/json"
    );
}
