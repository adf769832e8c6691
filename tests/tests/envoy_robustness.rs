//! Hostile sizes and shapes through real Envoy: request bodies (parsed for
//! the policy, read only up to the bound), huge headers, deeply nested
//! JSON, and a policy that runs away. Nothing crashes the VM, nothing
//! reaches the upstream that the policy did not allow, and the worker keeps
//! answering afterwards.

use palisade_tests::envoy::{Envoy, Listener};
use palisade_tests::http::{self, Response};
use palisade_tests::upstream::Upstream;
use serde_json::json;

/// Allows a JSON payment under 100, and a PUT whose body is too large to read whole.
const BODY_POLICY: &str = r#"package envoy.authz
import rego.v1
default allow := false
allow if input.attributes.request.http.path == "/health"
allow if {
	input.attributes.request.http.method == "POST"
	input.parsed_body.amount < 100
}
allow if {
	input.attributes.request.http.method == "PUT"
	input.truncated_body
}
slow if {
	input.parsed_path == ["slow"]
	count([x | some i in numbers.range(1, 3000); some j in numbers.range(1, 3000); x := i * j]) > 0
}
allow if slow
"#;

/// No providers: a denial is 403, as OPA-Envoy answers (401 asks for a
/// token only when Palisade verifies tokens).
fn config() -> serde_json::Value {
    json!({
        "policy": {"modules": {"body.rego": BODY_POLICY}, "decision": "data.envoy.authz.allow", "max_eval_ms": 50},
        "request_body": {"max_bytes": 1024},
    })
}

fn send(
    up: &Upstream,
    port: u16,
    method: &str,
    body: Vec<u8>,
    content_type: &str,
) -> (Response, bool) {
    let before = up.hits();
    let r = http::request_with_body(
        port,
        method,
        "/api/v1/payments",
        &[("content-type", content_type.as_bytes())],
        body,
    );
    (r, up.hits() > before)
}

fn alive(port: u16) {
    assert_eq!(
        http::get(port, "/health", &[]).status,
        200,
        "the VM still answers"
    );
}

#[test]
fn bodies_are_read_up_to_the_bound_and_given_to_the_policy() {
    let up = Upstream::start();
    let envoy = Envoy::start(up.port, &[Listener::new("body", config())]);
    let port = envoy.port("body");

    // The policy decides on the parsed body.
    let (r, reached) = send(
        &up,
        port,
        "POST",
        br#"{"amount": 42}"#.to_vec(),
        "application/json",
    );
    assert!(
        reached,
        "a small payment reaches the upstream ({})",
        r.status
    );
    let (r, reached) = send(
        &up,
        port,
        "POST",
        br#"{"amount": 4200}"#.to_vec(),
        "application/json",
    );
    assert_eq!((r.status, reached), (403, false), "{}", r.body);

    // 10 MiB of JSON: only the first KiB is read, the body is truncated,
    // so it is never parsed, and the POST rule denies.
    let mut big = br#"{"amount": 1, "pad": ""#.to_vec();
    big.resize(10 << 20, b'x');
    big.extend_from_slice(b"\"}");
    let (r, reached) = send(&up, port, "POST", big, "application/json");
    assert_eq!((r.status, reached), (403, false), "{}", r.body);
    alive(port);

    // A large body the policy allows unread passes through whole.
    let (r, reached) = send(
        &up,
        port,
        "PUT",
        vec![b'y'; 256 << 10],
        "application/octet-stream",
    );
    assert!(reached, "the PUT reaches the upstream ({})", r.status);
    let seen = up.app.last_request();
    assert_eq!(seen["method"], "PUT");

    // Nesting 500 deep: not parsed (serde_json stops at 128), no crash.
    let deep = format!("{}{}", "[".repeat(500), "]".repeat(500));
    let (r, reached) = send(&up, port, "POST", deep.into_bytes(), "application/json");
    assert_eq!((r.status, reached), (403, false), "{}", r.body);
    alive(port);

    // Bodies are never written to the audit trail.
    for record in envoy.audit_records() {
        let input = &record["input"];
        assert!(input["parsed_body"].is_null(), "{record}");
        assert!(
            input["attributes"]["request"]["http"]["body"].is_null(),
            "{record}"
        );
    }
}

#[test]
fn a_runaway_policy_denies_within_its_bound_and_the_worker_goes_on() {
    let up = Upstream::start();
    let envoy = Envoy::start_with_workers(up.port, &[Listener::new("slow", config())], 1);
    let port = envoy.port("slow");
    let before = up.hits();
    let r = http::get(port, "/slow", &[]);
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.json()["reason"], "policy_timeout");
    assert_eq!(up.hits(), before, "the upstream was not reached");
    // The one worker is not starved: the next request is answered.
    alive(port);
    let id = r.header("x-palisade-decision-id").unwrap().to_owned();
    let record = envoy.wait_for_decisions(&[&id]).remove(0).unwrap();
    assert_eq!(record["reason"], "policy_timeout");
    assert!(
        record["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("time limit"),
        "{record}"
    );
}

#[test]
fn huge_and_hostile_headers_never_crash_the_vm() {
    let up = Upstream::start();
    let envoy = Envoy::start(up.port, &[Listener::new("headers", config())]);
    let port = envoy.port("headers");
    // 1 MiB of header: Envoy refuses it (431) before the filter; nothing breaks.
    let huge = vec![b'a'; 1 << 20];
    let before = up.hits();
    let r = http::request(port, "GET", "/health", &[("x-big", &huge)]);
    assert!(r.status == 431 || r.status == 400, "{}", r.status);
    assert_eq!(up.hits(), before);
    // 50 KiB (under Envoy's 60 KiB limit) reaches the filter, which reads
    // it into the policy input and answers (the demo API itself would
    // refuse a header this large, so the request is one the policy denies).
    let large = vec![b'b'; 50 << 10];
    let r = http::request(port, "GET", "/private", &[("x-large", &large)]);
    assert_eq!(
        (r.status, r.json()["reason"].as_str()),
        (403, Some("policy_denied"))
    );
    assert_eq!(up.hits(), before);
    // Bytes that are not UTF-8 in a header value (the demo API would choke
    // on them too).
    let r = http::request(port, "GET", "/private", &[("x-odd", b"\xff\xfe\x80")]);
    assert_eq!(
        (r.status, r.json()["reason"].as_str()),
        (403, Some("policy_denied"))
    );
    alive(port);
}
