//! The host itself: configuration, traps, unknown imports, shared VMs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use palisade_harness::host::{
    FakeClock, FilterModule, HttpRequest, SharedSpace, StartError, UpstreamResponse, Vm,
};
use std::time::Duration;

const NOW: Duration = Duration::from_secs(1_700_000_000);

fn get(path: &str) -> HttpRequest {
    HttpRequest {
        method: "GET".into(),
        path: path.into(),
        authority: "customers.internal".into(),
        scheme: "http".into(),
        peer: "127.0.0.1:40000".into(),
        ..HttpRequest::default()
    }
}

/// Starts the filter with `config`, which it must refuse, and checks that
/// a log line gives `reason`.
fn assert_refused(config: &serde_json::Value, reason: &str) {
    let err = Vm::start(
        support::module(),
        config.to_string().as_bytes(),
        FakeClock::at(NOW),
        SharedSpace::new(),
    )
    .err()
    .unwrap_or_else(|| panic!("the filter must refuse the config ({reason})"));
    let StartError::ConfigRejected { logs } = &err else {
        panic!("{err}")
    };
    assert!(logs.iter().any(|l| l.message.contains(reason)), "{logs:?}");
}

#[test]
fn a_bad_configuration_is_rejected_with_the_reason() {
    let mut config = support::demo_config();
    config["providers"][0]["audience"] = "typo".into();
    assert_refused(&config, "providers[0].audience: unknown field `audience`");
}

#[test]
fn the_upstream_sees_the_filtered_request() {
    let mut vm = Vm::start(
        support::module(),
        support::demo_config().to_string().as_bytes(),
        FakeClock::at(NOW),
        SharedSpace::new(),
    )
    .unwrap();
    let mut request = get("/health");
    request
        .headers
        .push((b"x-palisade-decision-id".to_vec(), b"forged".to_vec()));
    request.id = Some("req-7".into());
    let mut seen = None;
    let x = vm.handle(&request, &mut |sent| {
        seen = Some(sent.clone());
        UpstreamResponse::default()
    });
    assert_eq!(x.status, 200);
    assert_eq!(
        seen.unwrap().header("x-palisade-decision-id").as_deref(),
        Some("req-7")
    );
    assert_eq!(x.decision().unwrap()["reason"], "allowed");
}

/// A guest that traps in `proxy_on_request_headers` and imports a host
/// function nobody provides.
const TRAPPING_GUEST: &str = r#"
(module
  (import "env" "proxy_no_such_call" (func $missing (result i32)))
  (memory (export "memory") 1)
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (if (i32.eq (local.get 1) (i32.const 5)) (then (drop (call $missing))))
    unreachable)
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32) (i32.const 0))
)"#;

#[test]
fn a_trap_fails_the_request_closed_and_kills_the_vm() {
    let module = FilterModule::from_bytes(TRAPPING_GUEST.as_bytes()).unwrap();
    let mut vm = Vm::start(&module, b"{}", FakeClock::at(NOW), SharedSpace::new()).unwrap();
    let mut reached = false;
    let x = vm.handle(&get("/x"), &mut |_| {
        reached = true;
        UpstreamResponse::default()
    });
    assert_eq!(x.status, 503);
    assert!(!reached, "the upstream must not be reached");
    assert!(
        x.trap.as_deref().is_some_and(|t| t.contains("unreachable")),
        "{:?}",
        x.trap
    );
    assert!(vm.is_dead());
    let again = vm.handle(&get("/x"), &mut |_| UpstreamResponse::default());
    assert_eq!(again.status, 503, "a dead VM keeps failing closed");
}

#[test]
fn an_unprovided_host_call_fails_loudly_with_its_name() {
    let module = FilterModule::from_bytes(TRAPPING_GUEST.as_bytes()).unwrap();
    let mut vm = Vm::start(&module, b"{}", FakeClock::at(NOW), SharedSpace::new()).unwrap();
    let mut request = get("/x");
    // 4 pseudo-headers + 1 header: the guest then calls the missing import.
    request.headers.push((b"x-a".to_vec(), b"1".to_vec()));
    let x = vm.handle(&request, &mut |_| UpstreamResponse::default());
    assert_eq!(x.status, 503);
    assert!(
        x.trap
            .as_deref()
            .is_some_and(|t| t.contains("proxy_no_such_call")),
        "{:?}",
        x.trap
    );
}

/// A guest that counts requests in shared data with compare-and-swap.
const COUNTING_GUEST: &str = r#"
(module
  (import "env" "proxy_get_shared_data" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_shared_data" (func $set (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "count")
  (global $heap (mut i32) (i32.const 4096))
  (func (export "proxy_on_memory_allocate") (param $n i32) (result i32)
    (local $p i32) (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n))) (local.get $p))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  ;; value ptr at 100, size at 104, cas at 108, new value at 200
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (local $v i32)
    (block $retry (loop $again
      (i32.store (i32.const 108) (i32.const 0))
      (i32.store (i32.const 200) (i32.const 0))
      (if (i32.eqz (call $get (i32.const 0) (i32.const 5) (i32.const 100) (i32.const 104) (i32.const 108)))
        (then (i32.store (i32.const 200) (i32.load (i32.load (i32.const 100))))))
      (i32.store (i32.const 200) (i32.add (i32.load (i32.const 200)) (i32.const 1)))
      (br_if $retry (i32.eqz
        (call $set (i32.const 0) (i32.const 5) (i32.const 200) (i32.const 4) (i32.load (i32.const 108)))))
      (br $again)))
    (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32) (i32.const 0))
)"#;

#[test]
fn vms_share_data_like_envoy_workers() {
    let module = FilterModule::from_bytes(COUNTING_GUEST.as_bytes()).unwrap();
    let shared = SharedSpace::new();
    // Envoy cannot create a key atomically, so the counter exists first;
    // every update after that goes through compare-and-swap.
    shared.set("count", 0u32.to_le_bytes().to_vec(), 0);
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (module, shared) = (module.clone(), shared.clone());
            std::thread::spawn(move || {
                let mut vm = Vm::start(&module, b"{}", FakeClock::at(NOW), shared).unwrap();
                for _ in 0..250 {
                    let x = vm.handle(&get("/"), &mut |_| UpstreamResponse::default());
                    assert_eq!(x.status, 200, "{:?}", x.trap);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let (value, _) = shared.get("count").expect("the guests wrote the counter");
    assert_eq!(
        u32::from_le_bytes(value.try_into().unwrap()),
        1000,
        "no update lost across VMs"
    );
}

/// A guest that dispatches an HTTP call when configured and records the size
/// of the answer's body in shared data.
const CALLING_GUEST: &str = r#"
(module
  (import "env" "proxy_http_call" (func $call (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_shared_data" (func $set (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "jwks")
  (data (i32.const 16) "\01\00\00\00\05\00\00\00\0b\00\00\00:path\00/certs/jwks\00")
  (data (i32.const 64) "seen")
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    (i32.eqz (call $call (i32.const 0) (i32.const 4) (i32.const 16) (i32.const 30)
      (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 500) (i32.const 200))))
  (func (export "proxy_on_http_call_response") (param i32 i32 i32 i32 i32)
    (i32.store (i32.const 300) (local.get 3))
    (drop (call $set (i32.const 64) (i32.const 4) (i32.const 300) (i32.const 4) (i32.const 0))))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32) (i32.const 0))
)"#;

#[test]
fn http_calls_are_recorded_and_answered() {
    let module = FilterModule::from_bytes(CALLING_GUEST.as_bytes()).unwrap();
    let shared = SharedSpace::new();
    let mut vm = Vm::start(&module, b"{}", FakeClock::at(NOW), shared.clone()).unwrap();
    let calls = vm.pending_http_calls().to_vec();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].upstream, "jwks");
    assert_eq!(
        calls[0].headers,
        vec![(b":path".to_vec(), b"/certs/jwks".to_vec())]
    );
    assert_eq!(calls[0].timeout_ms, 500);
    let answer = UpstreamResponse {
        status: 200,
        headers: vec![],
        body: b"{\"keys\":[]}".to_vec(),
    };
    vm.deliver_http_call_response(calls[0].token, &answer)
        .unwrap();
    assert!(vm.pending_http_calls().is_empty());
    let (seen, _) = shared.get("seen").unwrap();
    assert_eq!(
        u32::from_le_bytes(seen.try_into().unwrap()),
        11,
        "the guest saw the body size"
    );
    assert!(
        vm.deliver_http_call_response(calls[0].token, &answer)
            .is_err(),
        "answered only once"
    );
}

/// With `request_body` set, a request whose body ends in trailers (before
/// `max_bytes`) is decided when the trailers come, through the real `.wasm`:
/// a denied one never reaches the upstream.
#[test]
fn a_body_ending_in_trailers_is_decided_not_passed() {
    let mut config = support::demo_config();
    config["policy"]["decision"] = "data.envoy.authz.allow".into();
    config["policy"]["modules"] = serde_json::json!({"body.rego":
        "package envoy.authz\nimport rego.v1\ndefault allow := false\nallow if input.parsed_body.amount < 100\n"});
    config["request_body"] = serde_json::json!({"max_bytes": 1024});
    let mut vm = Vm::start(
        support::module(),
        config.to_string().as_bytes(),
        FakeClock::at(NOW),
        SharedSpace::new(),
    )
    .unwrap();
    for (body, allowed) in [
        (&br#"{"amount": 4200}"#[..], false),
        (br#"{"amount": 42}"#, true),
    ] {
        let mut request = get("/api/v1/payments");
        request.method = "POST".into();
        request
            .headers
            .push((b"content-type".to_vec(), b"application/json".to_vec()));
        request.body = body.to_vec();
        request.trailers = vec![(b"x-checksum".to_vec(), b"abc".to_vec())];
        let x = vm.handle(&request, &mut |_| UpstreamResponse::default());
        assert_eq!(
            x.upstream_request.is_some(),
            allowed,
            "{body:?}: {}",
            x.status
        );
        assert_eq!(x.trap, None);
        if !allowed {
            assert_eq!(x.status, 401);
        }
    }
}
