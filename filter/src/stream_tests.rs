use super::*;
use crate::mock::MockHost;
use serde_json::json;
use std::time::Duration;

const NOW: Duration = Duration::from_secs(1_700_000_000);
const JWKS: &str = include_str!("../../envoy/test-keys/jwks.json");
const POLICY: &str = r#"package envoy.authz
default allow := false
allow if input.attributes.request.http.path == "/health"
allow := {"allowed": true, "headers": {"x-subject": input.token.payload.sub}, "request_headers_to_remove": ["x-debug"], "response_headers_to_add": {"x-gate": "palisade"}} if {
    input.token.payload.sub == "alice"
}
"#;

fn loaded(mode: &str) -> Rc<Loaded> {
    let config = json!({
        "mode": mode,
        "providers": [{
            "name": "test", "issuer": "https://idp.palisade.test", "audiences": ["customer-api"],
            "algorithms": ["RS256"], "jwks": serde_json::from_str::<serde_json::Value>(JWKS).unwrap(),
        }],
        "policy": {"modules": {"authz.rego": POLICY}, "decision": "data.envoy.authz.allow"},
    });
    Rc::new(Loaded::new(
        Config::from_json(config.to_string().as_bytes()).unwrap(),
        Rc::new(palisade_core::ratelimit::store::MemoryStore::default()),
    ))
}

fn token(sub: &str) -> String {
    crate::mock::token(sub, NOW)
}

fn writer() -> Rc<Trail> {
    Rc::new(Trail::new(Rc::new(
        palisade_core::ratelimit::store::MemoryStore::default(),
    )))
}

/// One request through a stream: headers, the upstream's response, completion.
fn run_with(loaded: Option<Rc<Loaded>>, audit: Rc<Trail>, host: &MockHost) -> Flow {
    let mut stream = Stream::new(loaded, audit);
    let flow = stream.on_request_headers(host, true);
    if flow == Flow::Continue {
        let _ = stream.on_response_headers(host);
    }
    stream.on_log(host);
    flow
}

fn run(loaded: Option<Rc<Loaded>>, host: &MockHost) -> Flow {
    run_with(loaded, writer(), host)
}

#[test]
fn allowed_request_continues_with_policy_headers() {
    let auth = format!("Bearer {}", token("alice"));
    let host = MockHost::get(
        "/api/v1/customers/1",
        &[("authorization", &auth), ("x-debug", "1")],
        NOW,
    );
    assert_eq!(run(Some(loaded("enforce")), &host), Flow::Continue);
    assert!(host.reply.borrow().is_none());
    assert_eq!(host.upstream_header("x-subject").as_deref(), Some("alice"));
    assert_eq!(host.upstream_header("x-debug"), None);
    assert_eq!(
        *host.response_headers.borrow(),
        vec![("x-gate".to_owned(), "palisade".to_owned())]
    );
    let lines = host.decision_lines();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["decision"], "allow");
    assert_eq!(lines[0]["subject"], "alice");
    assert_eq!(lines[0]["decision_id"], "req-1");
    assert_eq!(
        host.upstream_header("x-palisade-decision-id").as_deref(),
        Some("req-1")
    );
}

#[test]
fn client_cannot_forge_the_decision_id_header() {
    let host = MockHost::get("/health", &[("x-palisade-decision-id", "forged")], NOW);
    assert_eq!(run(Some(loaded("enforce")), &host), Flow::Continue);
    let ids: Vec<_> = host
        .request_headers
        .borrow()
        .iter()
        .filter(|(k, _)| k == b"x-palisade-decision-id")
        .map(|(_, v)| v.clone())
        .collect();
    assert_eq!(ids, vec![b"req-1".to_vec()]);
}

#[test]
fn bad_token_gets_401_and_stops() {
    let host = MockHost::get("/health", &[("authorization", "Bearer not.a.token")], NOW);
    assert_eq!(run(Some(loaded("enforce")), &host), Flow::Stop);
    let reply = host.reply.borrow().clone().unwrap();
    assert_eq!(reply.status, 401);
    assert!(reply
        .headers
        .iter()
        .any(|(k, v)| k == "www-authenticate" && v.starts_with("Bearer error=\"invalid_token\"")));
    assert_eq!(host.decision_lines()[0]["reason"], "token_malformed");
}

#[test]
fn policy_denial_gets_403() {
    let auth = format!("Bearer {}", token("mallory"));
    let host = MockHost::get("/api/v1/customers", &[("authorization", &auth)], NOW);
    assert_eq!(run(Some(loaded("enforce")), &host), Flow::Stop);
    assert_eq!(host.reply.borrow().as_ref().unwrap().status, 403);
    assert_eq!(host.upstream_header("x-subject"), None);
}

#[test]
fn anonymous_denial_gets_401_bearer() {
    let host = MockHost::get("/api/v1/customers", &[], NOW);
    assert_eq!(run(Some(loaded("enforce")), &host), Flow::Stop);
    let reply = host.reply.borrow().clone().unwrap();
    assert_eq!(reply.status, 401);
    assert!(reply
        .headers
        .contains(&("www-authenticate".into(), "Bearer".into())));
}

#[test]
fn dry_run_forwards_the_denied_request_and_records_it() {
    let host = MockHost::get("/api/v1/customers", &[], NOW);
    assert_eq!(run(Some(loaded("dry_run")), &host), Flow::Continue);
    assert!(host.reply.borrow().is_none());
    let line = &host.decision_lines()[0];
    assert_eq!(line["decision"], "deny");
    assert_eq!(line["dry_run"], true);
    assert_eq!(line["reason"], "policy_denied");
}

#[test]
fn no_configuration_fails_closed() {
    let host = MockHost::get("/health", &[], NOW);
    assert_eq!(run(None, &host), Flow::Stop);
    assert_eq!(host.reply.borrow().as_ref().unwrap().status, 503);
}

#[test]
fn non_utf8_header_values_do_not_break_the_flow() {
    let host = MockHost::get("/health", &[], NOW);
    host.request_headers
        .borrow_mut()
        .push((b"x-bin".to_vec(), vec![0xff, 0xfe, 0x00]));
    host.request_headers
        .borrow_mut()
        .push((b"authorization".to_vec(), vec![b'B', 0xff]));
    assert_eq!(run(Some(loaded("enforce")), &host), Flow::Continue);
}

#[test]
fn log_line_never_contains_the_token_or_query() {
    let t = token("mallory");
    let auth = format!("Bearer {t}");
    let host = MockHost::get(
        "/api/v1/customers?api_key=s3cret",
        &[("authorization", &auth)],
        NOW,
    );
    run(Some(loaded("enforce")), &host);
    for (_, line) in host.logs.borrow().iter() {
        assert!(
            !line.contains(&t) && !line.contains("s3cret") && !line.contains("Bearer"),
            "{line}"
        );
    }
    let record = &host.decision_lines()[0];
    assert_eq!(record["request_path"], "/api/v1/customers?api_key=REDACTED");
    assert_eq!(record["path"], "envoy/authz/allow", "OPA's decision path");
}

#[test]
fn an_allowed_request_is_recorded_when_it_completes() {
    let auth = format!("Bearer {}", token("alice"));
    let host = MockHost::get("/api/v1/customers/1", &[("authorization", &auth)], NOW);
    let mut stream = Stream::new(Some(loaded("enforce")), writer());
    assert_eq!(stream.on_request_headers(&host, true), Flow::Continue);
    assert!(host.decision_lines().is_empty(), "not before the response");
    host.response_headers
        .borrow_mut()
        .push((":status".to_owned(), "204".to_owned()));
    let _ = stream.on_response_headers(&host);
    stream.on_log(&host);
    let records = host.decision_lines();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["decision"], "allow");
    assert_eq!(records[0]["http_status"], 204);
    assert_eq!(records[0]["subject"], "alice");
    assert_eq!(records[0]["result"]["allowed"], true);
    assert!(records[0]["latency_us"].is_u64());
}

#[test]
fn records_of_one_vm_form_one_chain() {
    let audit = writer();
    let l = loaded("enforce");
    for path in ["/health", "/api/v1/customers", "/health"] {
        run_with(
            Some(l.clone()),
            audit.clone(),
            &MockHost::get(path, &[], NOW),
        );
    }
    let host = MockHost::get("/health", &[], NOW);
    run_with(Some(l), audit.clone(), &host);
    let last = &host.audit_lines()[0];
    assert_eq!(last["seq"], 4, "a chain_reset, then four decisions");
    let head = audit.writer.borrow().head().unwrap();
    assert_eq!(last["hash"], head.hash);
}

#[test]
fn second_request_with_same_token_hits_the_cache() {
    let l = loaded("enforce");
    let auth = format!("Bearer {}", token("alice"));
    for _ in 0..2 {
        let host = MockHost::get("/api/v1/customers/1", &[("authorization", &auth)], NOW);
        assert_eq!(run(Some(l.clone()), &host), Flow::Continue);
    }
    assert_eq!(l.cache.borrow().len(), 1);
}

#[test]
fn policy_headers_replace_what_the_client_sent() {
    let auth = format!("Bearer {}", token("alice"));
    let host = MockHost::get(
        "/api/v1/customers/1",
        &[
            ("authorization", &auth),
            ("x-subject", "admin"),
            ("X-Subject", "root"),
        ],
        NOW,
    );
    assert_eq!(run(Some(loaded("enforce")), &host), Flow::Continue);
    let values: Vec<_> = host
        .request_headers
        .borrow()
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(b"x-subject"))
        .map(|(_, v)| v.clone())
        .collect();
    assert_eq!(values, vec![b"alice".to_vec()]);
}

#[test]
fn host_failures_fail_closed_and_are_recorded() {
    for (fail_headers, fail_clock) in [(true, false), (false, true)] {
        let mut host = MockHost::get("/health", &[], NOW);
        host.fail_headers = fail_headers;
        host.fail_clock = fail_clock;
        assert_eq!(run(Some(loaded("dry_run")), &host), Flow::Stop);
        let reply = host.reply.borrow().clone().unwrap();
        assert_eq!(reply.status, 503);
        assert!(reply.body.contains("host_error"), "{}", reply.body);
        assert_eq!(host.decision_lines()[0]["reason"], "host_error");
    }
}

#[test]
fn missing_configuration_is_recorded() {
    let host = MockHost::get("/health", &[], NOW);
    run(None, &host);
    assert_eq!(host.decision_lines()[0]["reason"], "not_configured");
    assert_eq!(host.decision_lines()[0]["http_status"], 503);
}

#[test]
fn metrics_count_decisions_by_reason_and_time_the_steps() {
    let l = loaded("enforce");
    let ok = format!("Bearer {}", token("alice"));
    run(
        Some(l.clone()),
        &MockHost::get("/api/v1/customers/1", &[("authorization", &ok)], NOW),
    );
    let bad = MockHost::get(
        "/api/v1/customers/1",
        &[("authorization", "Bearer a.b.c")],
        NOW,
    );
    run(Some(l), &bad);
    let counters = bad.counters.borrow();
    assert_eq!(
        counters.get("palisade.requests.deny.token_malformed"),
        Some(&1)
    );
    assert_eq!(
        counters.get("palisade.token_failures.token_malformed"),
        Some(&1)
    );
    assert_eq!(
        counters.get("palisade.audit_records"),
        Some(&2),
        "a chain_reset and the decision"
    );
    assert_eq!(bad.histograms.borrow()["palisade.verification_us"].len(), 1);
    assert!(
        !bad.histograms
            .borrow()
            .contains_key("palisade.evaluation_us"),
        "the policy never ran"
    );
}

fn shipped(required: bool) -> Rc<Loaded> {
    let config = json!({
        "providers": [{
            "name": "test", "issuer": "https://idp.palisade.test", "audiences": ["customer-api"],
            "algorithms": ["RS256"], "jwks": serde_json::from_str::<serde_json::Value>(JWKS).unwrap(),
        }],
        "policy": {"modules": {"authz.rego": POLICY}, "decision": "data.envoy.authz.allow"},
        "audit": {
            "personal_data": [{"path_prefix": "/api/v1/customers", "category": "pii"}],
            "collector": {"cluster": "collector", "required": required, "batch_max": 10}
        }
    });
    Rc::new(Loaded::new(
        Config::from_json(config.to_string().as_bytes()).unwrap(),
        Rc::new(palisade_core::ratelimit::store::MemoryStore::default()),
    ))
}

#[test]
fn records_ship_on_the_tick_and_a_required_collector_down_closes_personal_routes() {
    let (l, trail) = (shipped(true), writer());
    let auth = format!("Bearer {}", token("alice"));
    let read = || MockHost::get("/api/v1/customers/1", &[("authorization", &auth)], NOW);
    assert_eq!(
        run_with(Some(l.clone()), trail.clone(), &read()),
        Flow::Continue
    );
    let root = MockHost::get("/", &[], NOW);
    audit_tick(&trail, Some(&l), &root);
    let calls = root.calls.borrow().clone();
    assert_eq!(calls.len(), 1);
    let (cluster, headers, body) = &calls[0];
    assert_eq!(cluster, "collector");
    assert!(headers.contains(&(":path".to_owned(), "/logs".to_owned())));
    assert!(headers.contains(&("content-encoding".to_owned(), "gzip".to_owned())));
    assert_eq!(&body[..2], &[0x1f, 0x8b], "gzip");
    // The collector fails: personal routes close, others go on.
    root.call_status.set(Some(503));
    audit_log::answered(&root, &trail, 1);
    let refused = read();
    assert_eq!(
        run_with(Some(l.clone()), trail.clone(), &refused),
        Flow::Stop
    );
    assert_eq!(refused.reply.borrow().as_ref().unwrap().status, 503);
    assert_eq!(refused.decision_lines()[0]["reason"], "audit_unavailable");
    assert!(
        refused.upstream_header("x-palisade-decision-id").is_none(),
        "not forwarded"
    );
    let health = MockHost::get("/health", &[], NOW);
    assert_eq!(
        run_with(Some(l.clone()), trail.clone(), &health),
        Flow::Continue
    );
    // It answers again: the held records go out, and personal routes reopen.
    audit_tick(&trail, Some(&l), &root);
    root.call_status.set(Some(200));
    audit_log::answered(&root, &trail, 2);
    assert!(trail.collector.borrow().healthy());
    assert_eq!(run_with(Some(l), trail, &read()), Flow::Continue);
}

#[test]
fn an_optional_collector_down_closes_nothing() {
    let (l, trail) = (shipped(false), writer());
    run_with(
        Some(l.clone()),
        trail.clone(),
        &MockHost::get("/health", &[], NOW),
    );
    let mut root = MockHost::get("/", &[], NOW);
    root.fail_dispatch = true;
    audit_tick(&trail, Some(&l), &root);
    assert!(!trail.collector.borrow().healthy());
    let auth = format!("Bearer {}", token("alice"));
    let read = MockHost::get("/api/v1/customers/1", &[("authorization", &auth)], NOW);
    assert_eq!(run_with(Some(l), trail, &read), Flow::Continue);
}

#[test]
fn data_a_policy_marks_personal_is_closed_too_while_a_required_collector_is_down() {
    let config = json!({
        "policy": {"modules": {"p.rego": "package envoy.authz\nimport rego.v1\nallow := {\"allowed\": true, \"data_category\": \"hr\"} if input.parsed_path == [\"people\"]\nallow := true if input.parsed_path == [\"health\"]\n"},
                   "decision": "data.envoy.authz.allow"},
        "audit": {"collector": {"cluster": "collector", "required": true}}
    });
    let l = Rc::new(Loaded::new(
        Config::from_json(config.to_string().as_bytes()).unwrap(),
        Rc::new(palisade_core::ratelimit::store::MemoryStore::default()),
    ));
    let trail = writer();
    run_with(
        Some(l.clone()),
        trail.clone(),
        &MockHost::get("/health", &[], NOW),
    );
    let root = MockHost::get("/", &[], NOW);
    audit_tick(&trail, Some(&l), &root);
    root.call_status.set(Some(500));
    audit_log::answered(&root, &trail, 1);
    let people = MockHost::get("/people", &[], NOW);
    assert_eq!(
        run_with(Some(l.clone()), trail.clone(), &people),
        Flow::Stop
    );
    assert_eq!(people.decision_lines()[0]["reason"], "audit_unavailable");
    assert_eq!(
        run_with(Some(l), trail, &MockHost::get("/health", &[], NOW)),
        Flow::Continue
    );
}

const BODY_POLICY: &str = r#"package envoy.authz
default allow := false
allow if input.parsed_body.amount < 100
allow if {
    input.truncated_body
    input.attributes.request.http.method == "PUT"
}
"#;

fn body_loaded(max: usize) -> Rc<Loaded> {
    let config = json!({
        "policy": {"modules": {"authz.rego": BODY_POLICY}, "decision": "data.envoy.authz.allow"},
        "request_body": {"max_bytes": max},
    });
    Rc::new(Loaded::new(
        Config::from_json(config.to_string().as_bytes()).unwrap(),
        Rc::new(palisade_core::ratelimit::store::MemoryStore::default()),
    ))
}

fn post(body: &[u8], method: &str) -> MockHost {
    let host = MockHost::get(
        "/api/v1/payments",
        &[("content-type", "application/json")],
        NOW,
    );
    host.request_headers
        .borrow_mut()
        .retain(|(k, _)| k.as_slice() != b":method");
    host.request_headers
        .borrow_mut()
        .push((b":method".to_vec(), method.as_bytes().to_vec()));
    *host.request_body.borrow_mut() = body.to_vec();
    host
}

#[test]
fn the_decision_waits_for_the_body_and_the_policy_sees_it_parsed() {
    let body = br#"{"amount": 42}"#;
    let host = post(body, "POST");
    let mut stream = Stream::new(Some(body_loaded(1024)), writer());
    assert_eq!(stream.on_request_headers(&host, false), Flow::Stop);
    assert!(host.reply.borrow().is_none(), "nothing decided yet");
    // Half the body: Envoy keeps buffering.
    assert_eq!(stream.on_request_body(&host, 5, false), Flow::Stop);
    assert!(
        host.request_body_reads.borrow().is_empty(),
        "nothing read yet"
    );
    assert_eq!(
        stream.on_request_body(&host, body.len(), true),
        Flow::Continue
    );
    assert!(host.reply.borrow().is_none());

    let big = post(br#"{"amount": 4200}"#, "POST");
    let mut stream = Stream::new(Some(body_loaded(1024)), writer());
    assert_eq!(stream.on_request_headers(&big, false), Flow::Stop);
    assert_eq!(stream.on_request_body(&big, 16, true), Flow::Stop);
    // No providers, so no token is asked for: 403, as OPA-Envoy denies.
    assert_eq!(big.reply.borrow().as_ref().map(|r| r.status), Some(403));
}

#[test]
fn only_the_bounded_start_of_a_large_body_is_read() {
    let body = vec![b'x'; 10 << 20];
    let host = post(&body, "PUT");
    let mut stream = Stream::new(Some(body_loaded(64)), writer());
    assert_eq!(stream.on_request_headers(&host, false), Flow::Stop);
    // 10 MiB buffered: the filter reads its first 64 bytes only, and the
    // policy sees the body as truncated (and unparsed).
    assert_eq!(
        stream.on_request_body(&host, body.len(), false),
        Flow::Continue
    );
    assert_eq!(*host.request_body_reads.borrow(), vec![64]);
    // Later chunks pass without a second decision.
    assert_eq!(stream.on_request_body(&host, 1 << 20, true), Flow::Continue);
    assert_eq!(host.request_body_reads.borrow().len(), 1);
}

#[test]
fn without_request_body_or_without_a_body_the_headers_decide() {
    let host = post(b"", "POST");
    let mut stream = Stream::new(Some(body_loaded(64)), writer());
    // end_of_stream on the headers: no body is coming.
    assert_eq!(stream.on_request_headers(&host, true), Flow::Stop);
    assert_eq!(host.reply.borrow().as_ref().map(|r| r.status), Some(403));
    let host = MockHost::get("/health", &[], NOW);
    let mut stream = Stream::new(Some(loaded("enforce")), writer());
    assert_eq!(stream.on_request_headers(&host, false), Flow::Continue);
}

fn remote_loaded() -> Rc<Loaded> {
    let config = json!({
        "providers": [{
            "name": "idp", "issuer": "https://idp.palisade.test", "audiences": ["customer-api"],
            "algorithms": ["RS256"],
            "remote_jwks": {"cluster": "idp", "path": "/.well-known/jwks.json", "authority": "idp.internal"},
        }],
        "policy": {"modules": {"authz.rego": POLICY}, "decision": "data.envoy.authz.allow"},
    });
    Rc::new(Loaded::new(
        Config::from_json(config.to_string().as_bytes()).unwrap(),
        Rc::new(palisade_core::ratelimit::store::MemoryStore::default()),
    ))
}

#[test]
fn remote_keys_are_fetched_through_the_cluster_and_gate_tokens_until_they_come() {
    let loaded = remote_loaded();
    let root = MockHost::get("/", &[], NOW);
    loaded.fetch_keys(&root);
    let calls = root.calls.borrow().clone();
    assert_eq!(calls.len(), 1);
    let (cluster, headers, _) = &calls[0];
    assert_eq!(cluster, "idp");
    assert!(headers.contains(&(":path".into(), "/.well-known/jwks.json".into())));
    assert!(headers.contains(&(":authority".into(), "idp.internal".into())));

    // Before the answer: a token cannot be checked, 503 with Retry-After,
    // and the upstream is not reached.
    let auth = format!("Bearer {}", token("alice"));
    let host = MockHost::get("/api/v1/customers/1", &[("authorization", &auth)], NOW);
    assert_eq!(run(Some(loaded.clone()), &host), Flow::Stop);
    let reply = host.reply.borrow().clone().unwrap();
    assert_eq!(reply.status, 503);
    assert!(
        reply.body.contains("token_keys_unavailable"),
        "{}",
        reply.body
    );
    assert!(reply.headers.iter().any(|(k, _)| k == "retry-after"));

    // An answer that is not a JWKS changes nothing.
    root.call_status.set(Some(502));
    assert!(loaded.keys_answered(&root, 1, 0));
    assert!(!loaded.keys_answered(&root, 1, 0), "answered once");
    assert_eq!(
        root.counters.borrow().get("palisade.jwks_fetch_failures"),
        Some(&1)
    );

    // The JWKS arrives (a second fetch, after the backoff): the token verifies.
    let later = MockHost::get("/", &[], NOW + Duration::from_secs(2));
    loaded.fetch_keys(&later);
    assert_eq!(later.calls.borrow().len(), 1);
    later.call_status.set(Some(200));
    *later.call_response_body.borrow_mut() = JWKS.as_bytes().to_vec();
    assert!(loaded.keys_answered(&later, 1, JWKS.len()));
    let host = MockHost::get("/api/v1/customers/1", &[("authorization", &auth)], NOW);
    assert_eq!(run(Some(loaded.clone()), &host), Flow::Continue);
    assert_eq!(host.upstream_header("x-subject").as_deref(), Some("alice"));

    // Not a JWKS call: left to the audit trail.
    assert!(!loaded.keys_answered(&later, 99, 0));
}

#[test]
fn trailers_end_a_held_request_with_a_decision_never_a_pass() {
    // HEADERS, a short DATA frame, then trailers: the body never reached
    // max_bytes and never carried end_of_stream.
    let host = post(br#"{"amount": 4200}"#, "POST");
    let mut stream = Stream::new(Some(body_loaded(1024)), writer());
    assert_eq!(stream.on_request_headers(&host, false), Flow::Stop);
    assert_eq!(stream.on_request_body(&host, 16, false), Flow::Stop);
    assert_eq!(stream.on_request_trailers(&host), Flow::Stop);
    assert_eq!(host.reply.borrow().as_ref().map(|r| r.status), Some(403));
    assert_eq!(*host.request_body_reads.borrow(), vec![16]);

    // The same with a body the policy allows: decided, then let through.
    let host = post(br#"{"amount": 42}"#, "POST");
    let mut stream = Stream::new(Some(body_loaded(1024)), writer());
    assert_eq!(stream.on_request_headers(&host, false), Flow::Stop);
    assert_eq!(stream.on_request_body(&host, 14, false), Flow::Stop);
    assert_eq!(stream.on_request_trailers(&host), Flow::Continue);
    assert!(host.reply.borrow().is_none());

    // Headers then trailers, no body at all: decided on the empty body.
    let host = post(b"", "POST");
    let mut stream = Stream::new(Some(body_loaded(1024)), writer());
    assert_eq!(stream.on_request_headers(&host, false), Flow::Stop);
    assert_eq!(stream.on_request_trailers(&host), Flow::Stop);
    assert_eq!(host.reply.borrow().as_ref().map(|r| r.status), Some(403));
}

/// A remote-bundle configuration and a signed bundle whose policy allows
/// `/health` only.
fn bundle_loaded() -> (Rc<Loaded>, Vec<u8>) {
    use palisade_core::algorithm::Alg;
    use palisade_core::bundle::{build, Signer};
    let key = std::fs::read("../envoy/test-keys/rs256.key.pem").unwrap();
    let public = std::fs::read_to_string("../envoy/test-keys/rs256.pub.pem").unwrap();
    let signer = Signer::from_pem(Alg::RS256, &key, None, None).unwrap();
    let files: [(&str, &[u8]); 2] = [
        ("/.manifest", br#"{"revision": "r1"}"#),
        (
            "/envoy/authz/policy.rego",
            b"package envoy.authz\nallow if input.attributes.request.http.path == \"/health\"\n",
        ),
    ];
    let bundle = build(&files, Some(&signer)).unwrap();
    let config = json!({"policy": {"bundle": {
        "remote": {"cluster": "bundles", "path": "/b.tar.gz", "poll_seconds": 30},
        "signing": {"key": public},
    }}});
    let loaded = Rc::new(Loaded::new(
        Config::from_json(config.to_string().as_bytes()).unwrap(),
        Rc::new(palisade_core::ratelimit::store::MemoryStore::default()),
    ));
    (loaded, bundle)
}

#[test]
fn a_remote_bundle_is_polled_through_the_cluster_and_decides_once_installed() {
    let (loaded, bundle) = bundle_loaded();
    let root = MockHost::get("/", &[], NOW);
    loaded.poll_bundle(&root);
    let calls = root.calls.borrow().clone();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].0, "bundles");
    assert!(calls[0].1.contains(&(":path".into(), "/b.tar.gz".into())));
    loaded.poll_bundle(&root);
    assert_eq!(root.calls.borrow().len(), 1, "one poll at a time");

    // Before a bundle: 503, and nothing reaches the upstream.
    let host = MockHost::get("/health", &[], NOW);
    assert_eq!(run(Some(loaded.clone()), &host), Flow::Stop);
    let reply = host.reply.borrow().clone().unwrap();
    assert_eq!(reply.status, 503);
    assert!(reply.body.contains("policy_unavailable"), "{}", reply.body);

    // The bundle arrives, with an ETag the next poll sends back.
    root.call_status.set(Some(200));
    *root.call_response_body.borrow_mut() = bundle.clone();
    root.call_headers
        .borrow_mut()
        .push(("etag".into(), b"\"v1\"".to_vec()));
    assert!(
        !loaded.bundle_answered(&root, 99, bundle.len()),
        "not the poll"
    );
    assert!(loaded.bundle_answered(&root, 1, bundle.len()));
    assert_eq!(
        root.counters.borrow().get("palisade.bundle_loads"),
        Some(&1)
    );
    let host = MockHost::get("/health", &[], NOW);
    assert_eq!(run(Some(loaded.clone()), &host), Flow::Continue);
    let host = MockHost::get("/api/v1/customers", &[], NOW);
    assert_eq!(run(Some(loaded.clone()), &host), Flow::Stop);
    assert_eq!(host.reply.borrow().as_ref().map(|r| r.status), Some(403));

    let later = MockHost::get("/", &[], NOW + Duration::from_secs(30));
    loaded.poll_bundle(&later);
    let calls = later.calls.borrow().clone();
    assert!(calls[0]
        .1
        .contains(&("if-none-match".into(), "\"v1\"".into())));

    // An oversized answer is refused unread; the bundle stays in force.
    later.call_status.set(Some(200));
    let huge = palisade_core::policy::remote_bundle::MAX_FETCH_BYTES + 1;
    assert!(loaded.bundle_answered(&later, 1, huge));
    assert_eq!(
        later.counters.borrow().get("palisade.bundle_failures"),
        Some(&1)
    );
    assert!(later
        .logs
        .borrow()
        .iter()
        .any(|(_, m)| m.contains("`r1` stays in force")));
    let host = MockHost::get("/health", &[], NOW);
    assert_eq!(run(Some(loaded.clone()), &host), Flow::Continue);

    // A reload with the same source keeps the bundle: no 503 gap.
    let (reloaded, _) = bundle_loaded();
    reloaded.adopt_bundle(&loaded);
    let host = MockHost::get("/health", &[], NOW);
    assert_eq!(run(Some(reloaded), &host), Flow::Continue);
}
