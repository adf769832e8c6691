//! A VM that traps fails closed in real Envoy.
//!
//! The filter is built a second time with the TEST-ONLY `test-trap` feature
//! (profile `test-trap`, its own output directory): a request carrying
//! `x-palisade-test-trap` traps the VM in the middle of its headers. The
//! shipped configs use `FAIL_RELOAD` (the sidecar) and the tests
//! `FAIL_CLOSED`; both are shown. Neither lets the crashed stream, or any
//! request while the VM is down, reach the upstream; `FAIL_RELOAD` serves
//! again with a fresh VM.

use palisade_tests::envoy::{Envoy, Listener};
use palisade_tests::http::{self, Response};
use palisade_tests::upstream::Upstream;
use palisade_tests::{demo_config, repo};
use std::path::PathBuf;
use std::process::Command;

/// The TEST-ONLY module, built here if `scripts/test.sh` has not built it.
fn trap_module() -> PathBuf {
    let path = repo().join("target/wasm32-wasip1/test-trap/palisade_filter.wasm");
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(repo())
            .args([
                "build",
                "-q",
                "-p",
                "palisade-filter",
                "--target",
                "wasm32-wasip1",
                "--profile",
                "test-trap",
                "--features",
                "test-trap",
            ])
            .status()
            .expect("run cargo");
        assert!(status.success(), "building the test-trap module failed");
    }
    path
}

/// The response, or `None` when Envoy reset the stream without one.
fn try_get(port: u16, path: &str, headers: &[(&str, &str)]) -> Option<Response> {
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    std::panic::catch_unwind(move || {
        let h: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        http::get(port, path, &h)
    })
    .ok()
}

#[test]
fn a_trapping_vm_fails_closed_and_fail_reload_brings_it_back() {
    let module = trap_module();
    let up = Upstream::start();
    let envoy = Envoy::start_with_workers(
        up.port,
        &[
            Listener::new("reload", demo_config()).with_module(module.clone(), "FAIL_RELOAD"),
            Listener::new("closed", demo_config()).with_module(module, "FAIL_CLOSED"),
        ],
        1,
    );
    assert!(
        envoy.log().contains("TEST-ONLY build (feature test-trap)"),
        "the test module says what it is"
    );
    for listener in ["reload", "closed"] {
        let port = envoy.port(listener);
        assert_eq!(
            http::get(port, "/health", &[]).status,
            200,
            "{listener} serves"
        );
        let before = up.hits();
        let crashed = try_get(port, "/health", &[("x-palisade-test-trap", "1")]);
        assert!(
            crashed.as_ref().is_none_or(|r| r.status >= 500),
            "{listener}: the crashed stream got {crashed:?}"
        );
        assert_eq!(
            up.hits(),
            before,
            "{listener}: the crashed stream reached the upstream"
        );
    }

    // FAIL_CLOSED: the VM stays down, and nothing passes.
    let port = envoy.port("closed");
    let before = up.hits();
    for _ in 0..3 {
        let r = try_get(port, "/health", &[]);
        assert!(
            r.as_ref().is_none_or(|r| r.status == 503),
            "a dead VM must refuse: {r:?}"
        );
    }
    assert_eq!(
        up.hits(),
        before,
        "nothing reached the upstream past a dead VM"
    );

    // FAIL_RELOAD: a fresh VM serves again, with the same policy.
    let port = envoy.port("reload");
    let mut served = None;
    for _ in 0..20 {
        if let Some(r) = try_get(port, "/health", &[]) {
            if r.status == 200 {
                served = Some(r);
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        served.is_some(),
        "FAIL_RELOAD did not bring the filter back"
    );
    let before = up.hits();
    let r = http::get(port, "/api/v1/customers/42", &[]);
    assert_eq!(
        r.status, 401,
        "the reloaded VM enforces the policy: {}",
        r.body
    );
    assert_eq!(up.hits(), before);
}
