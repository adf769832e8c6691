//! OPA bundles through real Envoy: a signed bundle polled from a loopback
//! bundle server, swapped for a new revision under load without a failed
//! request, then a tampered and an unsigned one refused while the last
//! good revision keeps deciding. Each of Envoy's two workers polls on its
//! own.

use palisade_core::algorithm::Alg;
use palisade_core::bundle::{build, Signer};
use palisade_tests::bundle_server::BundleServer;
use palisade_tests::envoy::{Envoy, Listener};
use palisade_tests::upstream::Upstream;
use palisade_tests::{http, keys};
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const POLICY: &str = "package envoy.authz\n\ndefault allow = false\n\nallow {\n    input.attributes.request.http.path == data.envoy.authz.open[_]\n}\n";

fn signer() -> Signer {
    let pem = std::fs::read(keys().join("rs256.key.pem")).unwrap();
    Signer::from_pem(Alg::RS256, &pem, Some("global"), Some("write")).unwrap()
}

/// The files of revision `revision`, which opens `open` (v0 Rego, as the
/// manifest says).
fn files(revision: &str, open: &[&str]) -> Vec<(String, Vec<u8>)> {
    vec![
        (
            "/.manifest".into(),
            json!({"revision": revision, "roots": ["envoy"], "rego_version": 0})
                .to_string()
                .into_bytes(),
        ),
        (
            "/envoy/authz/data.json".into(),
            json!({ "open": open }).to_string().into_bytes(),
        ),
        (
            "/envoy/authz/policy.rego".into(),
            POLICY.as_bytes().to_vec(),
        ),
    ]
}

fn pack(files: &[(String, Vec<u8>)], signer: Option<&Signer>) -> Vec<u8> {
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    build(&refs, signer).unwrap()
}

fn config() -> serde_json::Value {
    let public = std::fs::read_to_string(keys().join("rs256.pub.pem")).unwrap();
    json!({
        "policy": {
            "bundle": {
                "remote": {"cluster": "bundles", "path": "/bundles/authz.tar.gz", "poll_seconds": 1, "timeout_ms": 1000},
                "signing": {"key": public, "algorithm": "RS256", "key_id": "global", "scope": "write"},
            },
        },
    })
}

fn status(port: u16, path: &str) -> u16 {
    http::get(port, path, &[]).status
}

/// Waits until `path` answers `want` on 20 requests in a row (both
/// workers, whichever serves them, have the revision).
fn settle(port: u16, path: &str, want: u16, envoy: &Envoy) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut streak = 0;
    while streak < 20 {
        assert!(
            Instant::now() < deadline,
            "{path} never settled on {want}; Envoy log:\n{}",
            envoy.log()
        );
        if status(port, path) == want {
            streak += 1;
        } else {
            streak = 0;
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn signed_bundles_hot_swap_under_load_and_bad_ones_are_refused() {
    let signer = signer();
    let server = BundleServer::start(&pack(&files("r1", &["/health"]), Some(&signer)));
    let up = Upstream::start();
    let envoy = Envoy::start_with_clusters(
        up.port,
        &[Listener::new("gate", config())],
        2,
        &[("bundles", server.port)],
    );
    let port = envoy.port("gate");

    // Revision 1 opens /health only.
    settle(port, "/health", 200, &envoy);
    let before = up.hits();
    assert_eq!(status(port, "/api/v1/orders"), 403);
    assert_eq!(up.hits(), before, "a denied request reached the upstream");
    assert!(envoy
        .log()
        .contains("bundle revision `r1` (signature verified)"));

    // Under load on /health, revision 2 (which also opens /api/v1/orders)
    // replaces it: no request fails on the way.
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (stop, sent, failed) = (stop.clone(), sent.clone(), failed.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    if status(port, "/health") != 200 {
                        failed.fetch_add(1, Ordering::SeqCst);
                    }
                    sent.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    server.serve(&pack(
        &files("r2", &["/health", "/api/v1/orders"]),
        Some(&signer),
    ));
    settle(port, "/api/v1/orders", 200, &envoy);
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    for t in load {
        t.join().unwrap();
    }
    let (sent, failed) = (sent.load(Ordering::SeqCst), failed.load(Ordering::SeqCst));
    println!("hot swap under load: {sent} requests, {failed} failed");
    assert!(sent > 100, "the load ran ({sent} requests)");
    assert_eq!(failed, 0, "requests failed during the swap");

    // A polled bundle that has not changed costs a 304.
    let unchanged = server.not_modified();
    server.wait_for_polls(server.polls() + 2, Duration::from_secs(5));
    assert!(server.not_modified() > unchanged, "polls send the ETag");

    // Revision 3 would open everything, but its data was changed after
    // signing: refused, and revision 2 keeps deciding.
    let mut tampered = files("r3", &["/health", "/api/v1/orders"]);
    let signatures = {
        let refs: Vec<(&str, &[u8])> = tampered
            .iter()
            .map(|(n, b)| (n.as_str(), b.as_slice()))
            .collect();
        signer.signatures(&refs).unwrap()
    };
    tampered[1].1 = json!({"open": ["/health", "/api/v1/orders", "/api/v1/customers"]})
        .to_string()
        .into_bytes();
    tampered.push(("/.signatures.json".into(), signatures));
    // An unsigned one, too.
    let unsigned = pack(&files("r4", &["/health", "/api/v1/customers"]), None);
    for (what, bundle) in [("tampered", pack(&tampered, None)), ("unsigned", unsigned)] {
        let polls = server.polls();
        server.serve(&bundle);
        // Both workers have polled it (and more).
        server.wait_for_polls(polls + 4, Duration::from_secs(10));
        let before = up.hits();
        for _ in 0..20 {
            assert_eq!(
                status(port, "/api/v1/customers"),
                403,
                "{what} bundle took effect"
            );
            assert_eq!(
                status(port, "/api/v1/orders"),
                200,
                "{what}: revision 2 stopped deciding"
            );
        }
        assert_eq!(
            up.hits(),
            before + 20,
            "only the allowed requests reached the upstream"
        );
    }
    let log = envoy.log();
    let refused: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("policy bundle from cluster `bundles` refused"))
        .collect();
    assert!(
        refused.iter().any(|l| l.contains("envoy/authz/data.json")),
        "the refusal names the tampered file: {refused:?}"
    );
    assert!(
        refused.iter().any(|l| l.contains("not signed")),
        "the unsigned bundle is refused as such: {refused:?}"
    );
    assert!(log.contains("bundle revision `r2` stays in force"));
}

#[test]
fn no_bundle_yet_fails_closed_with_503() {
    let server = BundleServer::start(b"not a bundle");
    let up = Upstream::start();
    let envoy = Envoy::start_with_clusters(
        up.port,
        &[Listener::new("gate", config())],
        1,
        &[("bundles", server.port)],
    );
    let port = envoy.port("gate");
    server.wait_for_polls(1, Duration::from_secs(5));
    let r = http::get(port, "/health", &[]);
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["reason"], "policy_unavailable");
    assert_eq!(r.header("retry-after"), Some("5"));
    assert_eq!(up.hits(), 0, "the upstream was reached without a policy");
}
