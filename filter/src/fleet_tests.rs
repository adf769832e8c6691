//! The fleet-wide flow of one stream, on the mock host: what is held, what
//! is sent, what the answers do.

use crate::audit_log::Trail;
use crate::fleet::Outbox;
use crate::host::{Flow, Host};
use crate::mock::MockHost;
use crate::stream::{Loaded, Stream};
use palisade_core::config::Config;
use palisade_core::ratelimit::store::MemoryStore;
use palisade_rls_proto::prost::Message;
use palisade_rls_proto::rate_limit_response::{Code, DescriptorStatus, RateLimit};
use palisade_rls_proto::{RateLimitRequest, RateLimitResponse};
use serde_json::json;
use std::rc::Rc;
use std::time::Duration;

const NOW: Duration = Duration::from_secs(1_700_000_000);
const JWKS: &str = include_str!("../../envoy/test-keys/jwks.json");

/// A bulk rule counted fleet-wide (records in pages of at most 100, and a
/// suspension), the local budget large, a policy that allows all.
fn loaded(on_failure: &str) -> Rc<Loaded> {
    loaded_in(on_failure, "enforce")
}

/// As [`loaded`], in `mode` (`enforce` or `dry_run`).
fn loaded_in(on_failure: &str, mode: &str) -> Rc<Loaded> {
    let config = json!({
        "mode": mode,
        "providers": [{
            "name": "test", "issuer": "https://idp.palisade.test", "audiences": ["customer-api"],
            "algorithms": ["RS256"], "jwks": serde_json::from_str::<serde_json::Value>(JWKS).unwrap(),
        }],
        "policy": {"modules": {"authz.rego": "package envoy.authz\nallow := true\n"},
                   "decision": "data.envoy.authz.allow"},
        "rate_limits": [{
            "name": "customer-bulk",
            "match": {"path_prefix": "/api/v1/customers", "methods": ["GET"]},
            "key": "sub",
            "records": {"limit": 100000, "period_seconds": 3600, "count": {"json_array": "/items"}},
            "max_page_size": {"param": "limit", "max": 100},
            "suspend_seconds": 900,
            "global": {"cluster": "palisade_rls", "on_failure": on_failure,
                       "identity_key": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="}
        }],
    });
    Rc::new(Loaded::new(
        Config::from_json(config.to_string().as_bytes()).unwrap(),
        Rc::new(MemoryStore::default()),
    ))
}

/// A stream under `loaded`, handing its deferred calls to `outbox`.
fn stream_in(loaded: Rc<Loaded>, outbox: &Rc<Outbox>) -> Stream {
    Stream::new(
        Some(loaded),
        Rc::new(Trail::new(Rc::new(MemoryStore::default()))),
    )
    .with_outbox(outbox.clone())
}

fn bulk_get(sub: &str) -> MockHost {
    let auth = format!("Bearer {}", crate::mock::token(sub, NOW));
    MockHost::get(
        "/api/v1/customers?limit=100",
        &[("authorization", &auth)],
        NOW,
    )
}

/// One descriptor status: OK with `remaining`, or OVER_LIMIT.
fn status(over: bool, remaining: u32) -> DescriptorStatus {
    DescriptorStatus {
        code: if over { Code::OverLimit } else { Code::Ok } as i32,
        current_limit: Some(RateLimit {
            name: "customer-bulk".into(),
            ..RateLimit::default()
        }),
        limit_remaining: remaining,
        duration_until_reset: None,
    }
}

fn answer(statuses: Vec<DescriptorStatus>) -> Vec<u8> {
    let over = statuses.iter().any(|s| s.code == Code::OverLimit as i32);
    RateLimitResponse {
        overall_code: if over { Code::OverLimit } else { Code::Ok } as i32,
        statuses,
    }
    .encode_to_vec()
}

/// Delivers `body` as the answer to the last gRPC call the stream made.
fn reply(stream: &mut Stream, host: &MockHost, grpc_status: u32, body: Vec<u8>) {
    let token = 1_000 + u32::try_from(host.grpc_calls.borrow().len()).unwrap();
    let size = body.len();
    *host.grpc_answer.borrow_mut() = body;
    stream.on_grpc_response(host, token, grpc_status, size);
}

/// Answers a request-phase check: the records descriptor OVER_LIMIT or OK
/// with `remaining` left, the suspension descriptor OK (not suspended).
fn check_answer(stream: &mut Stream, host: &MockHost, over: bool, remaining: u32) {
    reply(
        stream,
        host,
        0,
        answer(vec![status(over, remaining), status(false, 0)]),
    );
}

/// The last call's request, decoded.
fn last_request(host: &MockHost) -> RateLimitRequest {
    let calls = host.grpc_calls.borrow();
    RateLimitRequest::decode(calls.last().unwrap().1.as_slice()).unwrap()
}

fn page(n: usize) -> Vec<u8> {
    let items: Vec<String> = (0..n).map(|i| format!("{{\"id\":{i}}}")).collect();
    format!("{{\"items\":[{}]}}", items.join(",")).into_bytes()
}

/// The upstream answers 200 with `body` in one chunk; what the client gets
/// and what `on_response_body` returned.
fn respond(stream: &mut Stream, host: &MockHost, body: Vec<u8>) -> (String, Flow) {
    host.add_response_header(":status", "200");
    assert_eq!(stream.on_response_headers(host), Flow::Continue);
    let size = body.len();
    *host.response_chunk.borrow_mut() = body;
    let flow = stream.on_response_body(host, size, true);
    (
        String::from_utf8(host.response_chunk.borrow().clone()).unwrap(),
        flow,
    )
}

#[test]
fn a_request_waits_for_the_fleet_and_its_body_is_cut_at_the_lease() {
    let host = bulk_get("exporter");
    let outbox = Rc::new(Outbox::default());
    let mut stream = stream_in(loaded("deny"), &outbox);
    // Held until the service answers: nothing reaches the upstream yet.
    assert_eq!(stream.on_request_headers(&host, true), Flow::Wait);
    let check = last_request(&host);
    // The target: a GrpcService naming the cluster (see RlsCall::grpc_service).
    assert_eq!(host.grpc_calls.borrow()[0].0, "\n\x0e\n\x0cpalisade_rls");
    assert_eq!(check.domain, "palisade");
    let kinds: Vec<(&str, Option<u64>)> = check
        .descriptors
        .iter()
        .map(|d| (d.entries[1].value.as_str(), d.hits_addend))
        .collect();
    assert_eq!(kinds, [("records", Some(0)), ("suspension", Some(0))]);
    assert!(
        check
            .descriptors
            .iter()
            .all(|d| d.entries[2].value != "sub=exporter"),
        "the service sees a pseudonym, not the identity"
    );
    // 7 records left fleet-wide: the request goes on, with a lease of 7.
    check_answer(&mut stream, &host, false, 7);
    assert_eq!(host.resumed_requests.get(), 1);
    assert!(host.reply.borrow().is_none());
    // The upstream ignores the page size and sends 10: the client gets 7,
    // and the end of the response waits for the charge of those 7.
    let (got, flow) = respond(&mut stream, &host, page(10));
    assert_eq!(got.matches("\"id\"").count(), 7, "{got}");
    assert_eq!(flow, Flow::Wait);
    let charge = last_request(&host);
    assert_eq!(charge.descriptors.len(), 1);
    assert_eq!(charge.descriptors[0].entries[1].value, "records");
    assert_eq!(charge.descriptors[0].hits_addend, Some(7));
    assert_eq!(host.resumed_responses.get(), 0);
    reply(&mut stream, &host, 0, answer(vec![status(false, 0)]));
    assert_eq!(host.resumed_responses.get(), 1);
    // Cut at the rest of the fleet's budget: the root suspends the caller.
    let calls = host.grpc_calls.borrow().len();
    outbox.send(&host);
    assert_eq!(host.grpc_calls.borrow().len(), calls + 1);
    let suspend = last_request(&host);
    assert_eq!(suspend.descriptors[0].entries[1].value, "suspension");
    assert_eq!(suspend.descriptors[0].hits_addend, Some(1));
    stream.on_log(&host);
    // Charged once: the stream's end hands nothing more to the root.
    let calls = host.grpc_calls.borrow().len();
    outbox.send(&host);
    assert_eq!(host.grpc_calls.borrow().len(), calls);
    let record = &host.decision_lines()[0];
    assert_eq!(
        (record["records"].as_u64(), record["truncated"].as_bool()),
        (Some(7), Some(true))
    );
}

#[test]
fn a_spent_fleet_budget_refuses_before_the_upstream() {
    let host = bulk_get("exporter");
    let outbox = Rc::new(Outbox::default());
    let mut stream = stream_in(loaded("deny"), &outbox);
    assert_eq!(stream.on_request_headers(&host, true), Flow::Wait);
    check_answer(&mut stream, &host, true, 0);
    // Overspent (OVER_LIMIT, not merely 0 left): the root suspends fleet-wide.
    let calls = host.grpc_calls.borrow().len();
    outbox.send(&host);
    assert_eq!(host.grpc_calls.borrow().len(), calls + 1);
    assert_eq!(
        last_request(&host).descriptors[0].entries[1].value,
        "suspension"
    );
    assert_eq!(
        host.resumed_requests.get(),
        0,
        "the upstream is never reached"
    );
    let reply = host.reply.borrow().clone().unwrap();
    assert_eq!(reply.status, 429);
    assert!(reply.body.contains("records_exhausted"), "{}", reply.body);
    let record = &host.decision_lines()[0];
    assert_eq!(
        (record["decision"].as_str(), record["reason"].as_str()),
        (Some("deny"), Some("records_exhausted"))
    );
    assert_eq!(
        host.counters.borrow()["palisade.fleet_refusals.records_exhausted"],
        1
    );
    // The record joins the refusal to the service's counters: the caller's
    // pseudonym under the rule, next to the subject.
    assert_eq!(record["subject"], "exporter");
    let pseudonym = record["fleet_pseudonyms"]["customer-bulk"]
        .as_str()
        .unwrap();
    assert_eq!(pseudonym.len(), 32);
    assert_eq!(
        pseudonym,
        last_request(&host).descriptors[0].entries[2].value
    );
}

#[test]
fn a_service_that_times_out_closes_the_bulk_route_and_says_why() {
    let host = bulk_get("exporter");
    let mut stream = stream_in(loaded("deny"), &Rc::default());
    assert_eq!(stream.on_request_headers(&host, true), Flow::Wait);
    reply(&mut stream, &host, 4, Vec::new()); // DEADLINE_EXCEEDED
    assert_eq!(host.resumed_requests.get(), 0);
    let reply = host.reply.borrow().clone().unwrap();
    assert_eq!(reply.status, 503);
    assert!(
        reply.body.contains("rate_limit_unavailable"),
        "{}",
        reply.body
    );
    assert_eq!(
        host.counters.borrow()["palisade.rls_failures.rls_timeout"],
        1
    );
    let record = &host.decision_lines()[0];
    assert_eq!(
        record["rate_limit_service_failures"],
        json!([{"rule": "customer-bulk", "failure": "rls_timeout", "outcome": "refused"}])
    );
}

#[test]
fn with_on_failure_local_the_local_limits_decide_and_the_fallback_is_on_record() {
    let host = bulk_get("exporter");
    let mut stream = stream_in(loaded("local"), &Rc::default());
    assert_eq!(stream.on_request_headers(&host, true), Flow::Wait);
    reply(&mut stream, &host, 14, Vec::new()); // UNAVAILABLE
    assert_eq!(host.resumed_requests.get(), 1);
    assert!(host.reply.borrow().is_none());
    assert_eq!(
        host.counters.borrow()["palisade.rls_fallbacks.rls_unavailable"],
        1
    );
    // No lease: the whole page passes (the local budget is large), and is
    // still charged to the fleet once the service answers again.
    let (got, flow) = respond(&mut stream, &host, page(10));
    assert_eq!((got.matches("\"id\"").count(), flow), (10, Flow::Wait));
    assert_eq!(last_request(&host).descriptors[0].hits_addend, Some(10));
    reply(&mut stream, &host, 14, Vec::new());
    assert_eq!(
        host.resumed_responses.get(),
        1,
        "a failed charge does not hold the response"
    );
    stream.on_log(&host);
    let record = &host.decision_lines()[0];
    assert_eq!(record["decision"], "allow");
    assert_eq!(
        record["rate_limit_service_failures"],
        json!([{"rule": "customer-bulk", "failure": "rls_unavailable", "outcome": "local_limits"}])
    );
}

/// A bulk request the fleet allowed with `remaining` records left, whose
/// upstream has answered 200: the host, the root's outbox and the stream.
fn responding_with_lease(remaining: u32) -> (MockHost, Rc<Outbox>, Stream) {
    let host = bulk_get("exporter");
    let outbox = Rc::new(Outbox::default());
    let mut stream = stream_in(loaded("deny"), &outbox);
    assert_eq!(stream.on_request_headers(&host, true), Flow::Wait);
    check_answer(&mut stream, &host, false, remaining);
    host.add_response_header(":status", "200");
    stream.on_response_headers(&host);
    (host, outbox, stream)
}

#[test]
fn a_client_that_hangs_up_is_still_charged_by_the_root() {
    let (host, outbox, mut stream) = responding_with_lease(500);
    // Half a page streams, then the stream ends without its last chunk.
    let body = page(10);
    let half = body.len() / 2;
    *host.response_chunk.borrow_mut() = body[..half].to_vec();
    assert_eq!(stream.on_response_body(&host, half, false), Flow::Continue);
    // Records started, the one cut mid-way included (`{` less the outer one).
    let got = String::from_utf8(host.response_chunk.borrow().clone()).unwrap();
    let delivered = u64::try_from(got.matches('{').count() - 1).unwrap();
    assert!(delivered > 0);
    let calls = host.grpc_calls.borrow().len();
    stream.on_log(&host);
    assert_eq!(
        host.grpc_calls.borrow().len(),
        calls,
        "the root context charges it, not the stream"
    );
    outbox.send(&host);
    let charge = last_request(&host);
    assert_eq!(charge.descriptors[0].entries[1].value, "records");
    assert_eq!(charge.descriptors[0].hits_addend, Some(delivered));
}

#[test]
fn a_host_that_will_not_start_the_call_fails_closed_at_once() {
    let host = MockHost {
        fail_grpc: true,
        ..bulk_get("exporter")
    };
    let mut stream = stream_in(loaded("deny"), &Rc::default());
    assert_eq!(stream.on_request_headers(&host, true), Flow::Stop);
    assert_eq!(host.reply.borrow().as_ref().map(|r| r.status), Some(503));
    assert_eq!(
        host.counters.borrow()["palisade.rls_failures.rls_dispatch_failed"],
        1
    );
}

#[test]
fn routes_no_fleet_rule_covers_make_no_call() {
    let auth = format!("Bearer {}", crate::mock::token("exporter", NOW));
    let host = MockHost::get("/health", &[("authorization", &auth)], NOW);
    let mut stream = stream_in(loaded("deny"), &Rc::default());
    assert_eq!(stream.on_request_headers(&host, true), Flow::Continue);
    assert!(host.grpc_calls.borrow().is_empty());
}

#[test]
fn a_failed_call_that_took_its_whole_timeout_is_a_timeout() {
    use crate::fleet::seen_status;
    let (sent, timeout) = (NOW, Duration::from_millis(20));
    // Envoy's own timeout (UNAVAILABLE) and the service giving up (CANCELLED).
    for status in [14, 1, 4] {
        assert_eq!(seen_status(status, sent, sent + timeout, timeout), 4);
    }
    // Envoy's timer and the filter's clock differ by a few milliseconds.
    let early = Duration::from_millis(197);
    assert_eq!(
        seen_status(14, sent, sent + early, Duration::from_millis(200)),
        4
    );
    // A refused connection fails at once: not a timeout.
    assert_eq!(
        seen_status(14, sent, sent + Duration::from_millis(2), timeout),
        14
    );
    // An answer is an answer, however late.
    assert_eq!(seen_status(0, sent, sent + timeout * 3, timeout), 0);
}

#[test]
fn nothing_of_a_held_request_goes_on_before_the_fleet_answers() {
    let host = bulk_get("exporter");
    let mut stream = stream_in(loaded("deny"), &Rc::default());
    // Headers with a body to come: held, and so are the body and trailers
    // (a `Continue` from either would send the request upstream undecided).
    assert_eq!(stream.on_request_headers(&host, false), Flow::Wait);
    assert_eq!(stream.on_request_body(&host, 10, false), Flow::Wait);
    assert_eq!(stream.on_request_trailers(&host), Flow::Wait);
    reply(&mut stream, &host, 14, Vec::new());
    assert_eq!(host.resumed_requests.get(), 0);
    assert_eq!(host.reply.borrow().as_ref().map(|r| r.status), Some(503));
}

#[test]
fn a_client_that_hangs_up_after_the_last_lease_is_still_suspended() {
    let (host, outbox, mut stream) = responding_with_lease(3);
    // The lease (the fleet's last 3 records) runs out in this chunk; the
    // stream then ends without its last chunk.
    let body = page(10);
    *host.response_chunk.borrow_mut() = body.clone();
    assert_eq!(
        stream.on_response_body(&host, body.len(), false),
        Flow::Continue
    );
    stream.on_log(&host);
    let before = host.grpc_calls.borrow().len();
    outbox.send(&host);
    let sent: Vec<RateLimitRequest> = host.grpc_calls.borrow()[before..]
        .iter()
        .map(|(_, m)| RateLimitRequest::decode(m.as_slice()).unwrap())
        .collect();
    let kinds: Vec<(&str, Option<u64>)> = sent
        .iter()
        .map(|r| {
            (
                r.descriptors[0].entries[1].value.as_str(),
                r.descriptors[0].hits_addend,
            )
        })
        .collect();
    assert_eq!(kinds, [("suspension", Some(1)), ("records", Some(3))]);
}

#[test]
fn the_root_suspends_when_a_late_charge_overspends_and_reports_the_suspension() {
    let host = bulk_get("exporter");
    let outbox = Rc::new(Outbox::default());
    let check = palisade_core::ratelimit::global::checks(
        &loaded("deny").config.rate_limits,
        &palisade_core::request::Request {
            headers: palisade_core::request::Headers::from_pairs(vec![
                (b":method".to_vec(), b"GET".to_vec()),
                (b":path".to_vec(), b"/api/v1/customers".to_vec()),
            ]),
            source_address: Some("10.0.0.9:4000".into()),
            ..Default::default()
        },
        None,
    )
    .remove(0);
    outbox.push(&host, crate::fleet::Deferred::Charge(check, 40, true));
    outbox.send(&host);
    let token = 1_000 + u32::try_from(host.grpc_calls.borrow().len()).unwrap();
    *host.grpc_answer.borrow_mut() = answer(vec![status(true, 0)]);
    let size = host.grpc_answer.borrow().len();
    // Over budget: nothing to report yet, but the suspension goes out at once.
    assert_eq!(
        outbox
            .answered(&host, token, 0, size, NOW)
            .map(|s| s.is_some()),
        Some(false)
    );
    assert_eq!(
        last_request(&host).descriptors[0].entries[1].value,
        "suspension"
    );
    let token = token + 1;
    *host.grpc_answer.borrow_mut() = answer(vec![status(true, 0)]);
    let (suspension, _) = outbox
        .answered(&host, token, 0, size, NOW)
        .unwrap()
        .unwrap();
    assert_eq!(suspension.rule, "customer-bulk");
    assert_eq!(suspension.until, NOW.as_secs() + 900);
    // Not one of its calls: not its answer.
    assert!(outbox.answered(&host, token + 7, 0, size, NOW).is_none());
}

#[test]
fn in_dry_run_a_fleet_refusal_is_recorded_and_the_request_goes_on() {
    let host = bulk_get("exporter");
    let mut stream = stream_in(loaded_in("deny", "dry_run"), &Rc::default());
    assert_eq!(stream.on_request_headers(&host, true), Flow::Wait);
    check_answer(&mut stream, &host, true, 0);
    assert_eq!(host.resumed_requests.get(), 1);
    assert!(host.reply.borrow().is_none());
    // Dry run meters nothing: the whole page passes, uncut and uncharged.
    let calls = host.grpc_calls.borrow().len();
    let (got, flow) = respond(&mut stream, &host, page(10));
    assert_eq!((got.matches("\"id\"").count(), flow), (10, Flow::Continue));
    stream.on_log(&host);
    assert_eq!(host.grpc_calls.borrow().len(), calls);
    let record = &host.decision_lines()[0];
    assert_eq!(
        (record["decision"].as_str(), record["reason"].as_str()),
        (Some("deny"), Some("records_exhausted"))
    );
    assert_eq!(record["dry_run"], true);
}
