//! Behaviour through real Envoy that the request cases cannot express:
//! dry-run, fail-closed policy faults, hostile bytes, and config reloads.

use palisade_tests::demo_config;
use palisade_tests::envoy::{Envoy, Listener};
use palisade_tests::http::{self, Response};
use palisade_tests::upstream::Upstream;
use serde_json::{json, Value};

fn alice() -> String {
    palisade_tests::bearer(json!({"sub": "alice", "roles": ["customer"], "customer_id": "42"}))
}

/// `config` with the member at `pointer` set (added if absent).
fn with(mut config: Value, pointer: &str, value: Value) -> Value {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    config
        .pointer_mut(parent)
        .unwrap()
        .as_object_mut()
        .unwrap()
        .insert(key.to_owned(), value);
    config
}

/// Sends a request and reports whether it reached the upstream.
fn send(up: &Upstream, port: u16, path: &str, headers: &[(&str, &[u8])]) -> (Response, bool) {
    let before = up.hits();
    let r = http::request(port, "GET", path, headers);
    (r, up.hits() > before)
}

const FAULTY_POLICY: &str = r#"package envoy.authz
decision := "true" if input.parsed_path == ["string"]
decision := {"allowed": "yes"} if input.parsed_path == ["object"]
decision := true if to_number(input.parsed_query.n[0]) > 1
decision := true if input.parsed_path == ["conflict"]
decision := false if input.parsed_path == ["conflict"]
"#;

#[test]
fn dry_run_faults_and_hostile_bytes() {
    let up = Upstream::start();
    let faulty = with(
        with(
            demo_config(),
            "/policy/modules",
            json!({"faulty.rego": FAULTY_POLICY}),
        ),
        "/policy/decision",
        json!("data.envoy.authz.decision"),
    );
    let envoy = Envoy::start(
        up.port,
        &[
            Listener::new("enforce", demo_config()),
            Listener::new("dry_run", with(demo_config(), "/mode", json!("dry_run"))),
            Listener::new("faulty", faulty),
        ],
    );

    // dry_run: the denied request goes through, and the deny is recorded.
    let (r, reached) = send(&up, envoy.port("dry_run"), "/api/v1/customers/42", &[]);
    assert_eq!(r.status, 200, "{r:?}");
    assert!(reached);
    let id = up.app.last_request()["headers"]["x-palisade-decision-id"]
        .as_str()
        .unwrap()
        .to_owned();
    let line = envoy.decision(&id).expect("dry-run decision line");
    assert_eq!(
        (line["decision"].as_str(), line["reason"].as_str()),
        (Some("deny"), Some("policy_denied"))
    );
    assert_eq!(line["dry_run"], true);
    assert_eq!(line["http_status"], 200, "recorded after the response");
    // Its own metric, so a rollout can be measured before it is enforced.
    assert_eq!(
        envoy.metric("palisade_dry_run_denials{reason=\"policy_denied\"}"),
        1.0
    );
    // The same request is refused where the policy is enforced.
    let (r, reached) = send(&up, envoy.port("enforce"), "/api/v1/customers/42", &[]);
    assert_eq!((r.status, reached), (401, false));

    // A policy that errors, conflicts, or answers with a non-boolean fails closed.
    for (path, reason) in [
        ("/x?n=abc", "policy_error"),
        ("/conflict", "policy_error"),
        ("/string", "policy_invalid_result"),
        ("/object", "policy_invalid_result"),
        ("/nothing", "policy_undefined"),
    ] {
        let (r, reached) = send(&up, envoy.port("faulty"), path, &[]);
        assert_eq!((r.status, reached), (403, false), "{path}: {r:?}");
        assert_eq!(r.json()["reason"], reason, "{path}");
        let line = envoy
            .decision(r.header("x-palisade-decision-id").unwrap())
            .unwrap();
        assert_eq!(line["reason"], reason);
        assert!(
            line["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{line}"
        );
    }
    // ...while a well-formed answer still allows (the demo API has no /x): the VM is healthy.
    let (r, reached) = send(&up, envoy.port("faulty"), "/x?n=5", &[]);
    assert_eq!((r.status, reached), (404, true), "{r:?}");

    // Non-UTF-8 bytes in headers and in the token never crash the VM.
    let (r, reached) = send(
        &up,
        envoy.port("enforce"),
        "/health",
        &[
            ("x-bin", b"\xff\xfe\x80"),
            ("authorization", b"Bearer \xff\xfe.\xc3\x28.x"),
        ],
    );
    assert_eq!((r.status, reached), (401, false), "{r:?}");
    assert_eq!(r.json()["reason"], "token_malformed");
    let auth = alice();
    let (r, reached) = send(
        &up,
        envoy.port("enforce"),
        "/api/v1/customers/42",
        &[("authorization", auth.as_bytes())],
    );
    assert_eq!((r.status, reached), (200, true), "{r:?}");

    // No decision line ever carries the token.
    let log = envoy.log();
    let token = auth.trim_start_matches("Bearer ");
    assert!(!log.contains(token), "the token leaked into Envoy's log");
}

#[test]
fn bad_config_is_refused_and_the_last_good_one_keeps_serving() {
    let up = Upstream::start();
    let envoy = Envoy::start(up.port, &[Listener::new("live", demo_config())]);
    let port = envoy.port("live");
    let check_old_config = |when: &str| {
        let auth = alice();
        let (r, reached) = send(
            &up,
            port,
            "/api/v1/customers/42",
            &[("authorization", auth.as_bytes())],
        );
        assert_eq!((r.status, reached), (200, true), "alice, {when}");
        let (r, reached) = send(&up, port, "/api/v1/customers/42", &[]);
        assert_eq!((r.status, reached), (401, false), "anonymous, {when}");
    };
    check_old_config("before any update");

    let weak_jwks: Value = serde_json::from_str(
        &std::fs::read_to_string(
            palisade_tests::repo().join("envoy/test-keys/weak-rsa1024.jwks.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let bad_configs = [
        (
            "unparsable Rego",
            with(
                demo_config(),
                "/policy/modules",
                json!({"customer_data.rego": "package envoy.authz\nallow if {"}),
            ),
            "policy.modules[\"customer_data.rego\"]: ",
        ),
        (
            "unknown field",
            with(demo_config(), "/providers/0/audience", json!("typo")),
            "providers[0].audience: unknown field `audience`",
        ),
        (
            "weak RSA key",
            with(demo_config(), "/providers/0/jwks", weak_jwks),
            "providers[0].jwks.keys[0]: RSA key has 1024 bits",
        ),
        (
            "unknown algorithm",
            with(
                demo_config(),
                "/providers/0/algorithms",
                json!(["RS256", "none"]),
            ),
            "providers[0].algorithms[1]: unknown algorithm `none`",
        ),
        (
            "missing builtin",
            with(
                demo_config(),
                "/policy/modules",
                json!({"customer_data.rego": "package envoy.authz\nallow if time.weekday(0) == \"Monday\""}),
            ),
            "`time.weekday` is not a function",
        ),
    ];
    for (what, config, message) in bad_configs {
        let accepted = envoy.update_listeners(&[Listener::new("live", config)]);
        assert!(!accepted, "Envoy accepted a config with {what}");
        let log = envoy.log();
        assert!(
            log.lines()
                .any(|l| l.contains("palisade: configuration rejected") && l.contains(message)),
            "the Envoy log does not name the problem ({what}: {message})"
        );
        check_old_config(&format!("after refusing the {what}"));
    }

    // A good update still applies afterwards.
    assert!(envoy.update_listeners(&[Listener::new(
        "live",
        with(demo_config(), "/mode", json!("dry_run"))
    )]));
    let (r, reached) = send(&up, port, "/api/v1/customers/42", &[]);
    assert_eq!(
        (r.status, reached),
        (200, true),
        "the new dry_run config is in force: {r:?}"
    );
}
