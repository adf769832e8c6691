#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::algorithm::Alg;
use crate::bundle::{build, Signer};
use regorus::Value;

const KEY: &[u8] = include_bytes!("../../../../envoy/test-keys/rs256.key.pem");
const PUBLIC: &str = include_str!("../../../../envoy/test-keys/rs256.pub.pem");

/// A bundle whose policy allows the paths in its data.
fn bundle(allowed: &[&str], revision: &str, signed: bool) -> Vec<u8> {
    let manifest = format!(r#"{{"revision": "{revision}", "roots": ["envoy"]}}"#);
    let data = serde_json::json!({ "allowed": allowed }).to_string();
    let policy = "package envoy.authz\nallow if input.path in data.envoy.authz.allowed\n";
    let files: [(&str, &[u8]); 3] = [
        ("/.manifest", manifest.as_bytes()),
        ("/envoy/authz/data.json", data.as_bytes()),
        ("/envoy/authz/policy.rego", policy.as_bytes()),
    ];
    let signer = Signer::from_pem(Alg::RS256, KEY, Some("global"), None).unwrap();
    build(&files, signed.then_some(&signer)).unwrap()
}

fn source() -> RemoteBundle {
    RemoteBundle {
        cluster: "bundles".into(),
        path: "/bundles/authz.tar.gz".into(),
        authority: "bundles".into(),
        poll: Duration::from_secs(10),
        timeout: Duration::from_secs(2),
        verifier: Some(Verifier::new("RS256", PUBLIC, Some("global".into()), None).unwrap()),
        decision: "data.envoy.authz.allow".into(),
        options: PolicyOptions::default(),
        fingerprint: [0; 32],
    }
}

fn allows(live: &LiveBundle, path: &str) -> bool {
    let input = Value::from(serde_json::json!({ "path": path }));
    live.policy().unwrap().evaluate(input) == Ok(Value::Bool(true))
}

fn at(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn polls_at_once_then_every_period_sending_the_etag() {
    let source = source();
    let mut live = LiveBundle::default();
    assert!(
        live.policy().is_none(),
        "nothing is held before the first poll"
    );
    let first = live.due(&source, at(100)).unwrap();
    assert!(first
        .iter()
        .any(|(n, v)| n == ":path" && v == "/bundles/authz.tar.gz"));
    assert!(!first.iter().any(|(n, _)| n == "if-none-match"));
    assert!(live.due(&source, at(101)).is_none(), "one poll in flight");

    let rev1 = bundle(&["/a"], "r1", true);
    let polled = live.answered(&source, Some(200), Some("\"e1\"".into()), &rev1, at(101));
    assert!(
        matches!(polled, Ok(Polled::Installed { ref revision, verified: true, .. }) if revision == "r1"),
        "{polled:?}"
    );
    assert!(allows(&live, "/a") && !allows(&live, "/b"));

    assert!(
        live.due(&source, at(110)).is_none(),
        "not before the period"
    );
    let next = live.due(&source, at(111)).unwrap();
    assert!(next.contains(&("if-none-match".into(), "\"e1\"".into())));
    assert_eq!(
        live.answered(&source, Some(304), None, b"", at(111)),
        Ok(Polled::Unchanged)
    );
    assert_eq!(live.revision(), Some("r1"));
}

#[test]
fn a_new_revision_replaces_the_policy_and_in_flight_holders_keep_theirs() {
    let source = source();
    let mut live = LiveBundle::default();
    live.due(&source, at(0));
    live.answered(
        &source,
        Some(200),
        None,
        &bundle(&["/a"], "r1", true),
        at(0),
    )
    .unwrap();
    let held_by_a_request = live.policy().unwrap();
    live.due(&source, at(10));
    live.answered(
        &source,
        Some(200),
        None,
        &bundle(&["/a", "/b"], "r2", true),
        at(10),
    )
    .unwrap();
    assert!(allows(&live, "/b"));
    let input = Value::from(serde_json::json!({ "path": "/b" }));
    assert_eq!(held_by_a_request.evaluate(input), Ok(Value::Undefined));
}

#[test]
fn a_refused_bundle_leaves_the_last_good_one_in_force() {
    let source = source();
    let mut live = LiveBundle::default();
    live.due(&source, at(0));
    live.answered(
        &source,
        Some(200),
        None,
        &bundle(&["/a"], "r1", true),
        at(0),
    )
    .unwrap();

    let unsigned = bundle(&["/a", "/admin"], "r2", false);
    let e = live
        .answered(&source, Some(200), None, &unsigned, at(10))
        .unwrap_err();
    assert!(e.contains("not signed"), "{e}");

    let tampered = {
        let signer = Signer::from_pem(Alg::RS256, KEY, Some("global"), None).unwrap();
        let policy = "package envoy.authz\nallow if input.path in data.envoy.authz.allowed\n";
        let signed_data = br#"{"allowed": ["/a"]}"#;
        let files: [(&str, &[u8]); 2] = [
            ("/envoy/authz/data.json", signed_data),
            ("/envoy/authz/policy.rego", policy.as_bytes()),
        ];
        let sigs = signer.signatures(&files).unwrap();
        let swapped: [(&str, &[u8]); 3] = [
            (
                "/envoy/authz/data.json",
                br#"{"allowed": ["/a", "/admin"]}"#,
            ),
            ("/envoy/authz/policy.rego", policy.as_bytes()),
            ("/.signatures.json", &sigs),
        ];
        build(&swapped, None).unwrap()
    };
    let e = live
        .answered(&source, Some(200), None, &tampered, at(20))
        .unwrap_err();
    assert!(e.contains("data.json"), "the refusal names the file: {e}");

    for (status, body) in [
        (Some(500), &b""[..]),
        (None, &b""[..]),
        (Some(200), &b"not a bundle"[..]),
    ] {
        assert!(live.answered(&source, status, None, body, at(30)).is_err());
    }
    assert_eq!(live.revision(), Some("r1"));
    assert!(allows(&live, "/a") && !allows(&live, "/admin"));
}

#[test]
fn without_a_bundle_failures_are_retried_soon_and_304_is_refused() {
    let source = source();
    let mut live = LiveBundle::default();
    live.due(&source, at(0));
    assert!(live.answered(&source, Some(304), None, b"", at(0)).is_err());
    assert!(live.due(&source, at(0)).is_none());
    assert!(live.due(&source, at(1)).is_some(), "retried after 1 s");
    live.failed(&source, at(1));
    assert!(live.due(&source, at(2)).is_none());
    assert!(live.due(&source, at(3)).is_some(), "then after 2 s");
    assert!(live.policy().is_none());
}

#[test]
fn a_reload_keeps_the_bundle_and_polls_at_once_with_its_etag() {
    let source = source();
    let mut live = LiveBundle::default();
    live.due(&source, at(0));
    let rev1 = bundle(&["/a"], "r1", true);
    live.answered(&source, Some(200), Some("\"e1\"".into()), &rev1, at(0))
        .unwrap();
    let mut reloaded = live.carried_over();
    assert!(allows(&reloaded, "/a"), "no gap while the reload fetches");
    let poll = reloaded.due(&source, at(1)).expect("polls at once");
    assert!(poll.contains(&("if-none-match".into(), "\"e1\"".into())));
}

#[test]
fn a_poll_whose_answer_never_comes_counts_as_failed() {
    let source = source();
    let mut live = LiveBundle::default();
    assert!(live.due(&source, at(0)).is_some());
    // Timeout 2 s plus the margin: at 3 s the poll is given up and, with
    // nothing held, retried after 1 s.
    assert!(live.due(&source, at(3)).is_none());
    assert!(live.due(&source, at(4)).is_some());
}
