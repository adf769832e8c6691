//! Published OPA-Envoy policies, loaded unchanged, deciding through real
//! Envoy: pre-1.0 (v0) and 1.0 (v1) syntax, `io.jwt.decode_verify` with a
//! secret and with a JWKS, `time.now_ns` from the host clock,
//! `input.parsed_body`, an object decision adding a request header, and
//! OPA-Envoy's default decision path (no `decision` in any config here).
//! The policies and where they come from: `tests/opa-envoy/SOURCES.md`.
//!
//! Every denial is checked to leave the upstream untouched.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use palisade_core::algorithm::Alg;
use palisade_core::mint::{self, SigningKey};
use palisade_tests::envoy::{Envoy, Listener};
use palisade_tests::upstream::Upstream;
use palisade_tests::{http, keys, repo, tokens};
use serde_json::{json, Value};
use std::time::{SystemTime, UNIX_EPOCH};

/// The published policy `name`, as published.
fn policy(name: &str) -> String {
    std::fs::read_to_string(repo().join("tests/opa-envoy").join(name)).unwrap()
}

/// A plugin configuration holding only `module`, in `syntax`: no
/// providers (the policy verifies its own tokens) and no `decision`.
fn config(module: &str, syntax: &str) -> Value {
    json!({
        "policy": {"modules": {"policy.rego": module}, "rego_version": syntax},
        // The primer reads `input.parsed_body`.
        "request_body": {"max_bytes": 8192},
    })
}

/// The Kong Mesh example's placeholder, as its readers are told to fill it.
const JWKS_PLACEHOLDER: &str = "\"<your OpenID Connect provider's JWKS>\"";

fn with_test_jwks(module: &str) -> String {
    let jwks = std::fs::read_to_string(keys().join("jwks.json")).unwrap();
    assert!(module.contains(JWKS_PLACEHOLDER));
    module.replace(JWKS_PLACEHOLDER, &serde_json::to_string(&jwks).unwrap())
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The primer's tokens: HS256 with the secret `secret`; `sub` is base64
/// (the primer decodes it), `nbf`/`exp` around now unless `claims` says.
fn primer_token(secret: &[u8], claims: Value) -> String {
    let now = now();
    let mut all = json!({"nbf": now - 60, "exp": now + 600});
    for (k, v) in claims.as_object().unwrap() {
        all[k] = v.clone();
    }
    let key = SigningKey::from_secret(Alg::HS256, None, secret).unwrap();
    format!("Bearer {}", key.mint(&all).unwrap())
}

const GUEST_ALICE: &str = "YWxpY2U="; // base64("alice")
const ADMIN_BOB: &str = "Ym9i"; // base64("bob")

struct Setup {
    envoy: Envoy,
    up: Upstream,
}

impl Setup {
    /// `method path` with `auth` (and a JSON `body`) on listener `name`:
    /// the status, and whether the upstream was reached.
    fn send(
        &self,
        name: &str,
        method: &str,
        path: &str,
        auth: &str,
        body: Option<&Value>,
    ) -> (u16, bool, String) {
        let before = self.up.hits();
        let port = self.envoy.port(name);
        let r = match body {
            None => http::request(port, method, path, &[("authorization", auth.as_bytes())]),
            Some(body) => http::request_with_body(
                port,
                method,
                path,
                &[
                    ("authorization", auth.as_bytes()),
                    ("content-type", b"application/json"),
                ],
                body.to_string().into_bytes(),
            ),
        };
        let reason = r.json()["reason"].as_str().unwrap_or_default().to_owned();
        (r.status, self.up.hits() > before, reason)
    }

    fn allowed(&self, name: &str, method: &str, path: &str, auth: &str, body: Option<&Value>) {
        let (status, reached, _) = self.send(name, method, path, auth, body);
        assert!(
            reached && status != 403 && status != 401,
            "{name}: {method} {path} should pass to the upstream, got {status}; Envoy log:\n{}",
            self.envoy.log()
        );
    }

    fn denied(&self, name: &str, method: &str, path: &str, auth: &str, body: Option<&Value>) {
        let (status, reached, reason) = self.send(name, method, path, auth, body);
        assert_eq!(
            status, 403,
            "{name}: {method} {path} should be refused as OPA-Envoy does"
        );
        // The policy said no: not an evaluation error that happens to deny.
        assert_eq!(reason, "policy_denied", "{name}: {method} {path}");
        assert!(!reached, "{name}: a denied request reached the upstream");
    }
}

fn start() -> Setup {
    let up = Upstream::start();
    let envoy = Envoy::start(
        up.port,
        &[
            Listener::new(
                "ext_authz",
                config(&policy("envoy-ext-authz-example.rego"), "v0"),
            ),
            Listener::new(
                "primer_v0",
                config(&policy("opa-envoy-primer-v0.rego"), "v0"),
            ),
            Listener::new(
                "primer_v1",
                config(&policy("opa-envoy-primer-v1.rego"), "v1"),
            ),
            Listener::new(
                "kuma_jwks",
                config(&with_test_jwks(&policy("kuma-meshopa-jwks.rego")), "v0"),
            ),
            Listener::new(
                "primer_jwks",
                config(&with_test_jwks(&policy("primer-v1-with-jwks.rego")), "v1"),
            ),
        ],
    );
    Setup { envoy, up }
}

#[test]
fn published_opa_envoy_policies_decide_unchanged_through_envoy() {
    let s = start();

    // Envoy's ext_authz sandbox policy: GETs pass with the header the
    // policy adds; anything else is refused.
    s.allowed("ext_authz", "GET", "/health", "", None);
    let last = s.up.app.last_request();
    assert_eq!(last["headers"]["x-current-user"], "OPA", "{last}");
    s.denied("ext_authz", "POST", "/health", "", Some(&json!({})));

    // OPA's Envoy primer, in both syntaxes, verifying HS256 tokens with
    // `io.jwt.decode_verify(…, {"secret": "secret"})`.
    let guest = primer_token(b"secret", json!({"role": "guest", "sub": GUEST_ALICE}));
    let admin = primer_token(b"secret", json!({"role": "admin", "sub": ADMIN_BOB}));
    let charlie = json!({"firstname": "Charlie", "lastname": "Opa"});
    let bob = json!({"firstname": "Bob", "lastname": "Opa"});
    for name in ["primer_v0", "primer_v1"] {
        s.allowed(name, "GET", "/people/alice", &guest, None);
        s.allowed(name, "GET", "/people/alice", &admin, None);
        s.allowed(name, "POST", "/people", &admin, Some(&charlie));
        // `input.parsed_body` decides: an admin may not create themselves.
        s.denied(name, "POST", "/people", &admin, Some(&bob));
        s.denied(name, "POST", "/people", &guest, Some(&charlie));
        s.denied(name, "GET", "/admin", &admin, None);
        s.denied(name, "GET", "/people/alice", "", None);

        // What decode_verify must refuse, the policy never allows.
        let forged = primer_token(
            b"not-the-secret",
            json!({"role": "admin", "sub": ADMIN_BOB}),
        );
        s.denied(name, "GET", "/people/alice", &forged, None);
        let expired = primer_token(b"secret", json!({"role": "guest", "exp": now() - 10}));
        s.denied(name, "GET", "/people/alice", &expired, None);
        let later = primer_token(b"secret", json!({"role": "guest", "nbf": now() + 600}));
        s.denied(name, "GET", "/people/alice", &later, None);
        let claims =
            json!({"role": "admin", "sub": ADMIN_BOB, "nbf": now() - 60, "exp": now() + 600});
        let unsigned = mint::unsigned(r#"{"alg":"none","typ":"JWT"}"#, &claims.to_string());
        s.denied(
            name,
            "GET",
            "/people/alice",
            &format!("Bearer {unsigned}"),
            None,
        );
    }

    // A JWKS constraint (the primer, adapted): RS256 and ES256 tokens of
    // the test issuer pass; an attacker's key under the trusted `kid`, an
    // HS256 token keyed with the RSA public key, another audience, and
    // `alg: none` do not.
    let mint_with = |key: &str, extra: Value| {
        let now = now();
        let mut claims = tokens::claims(now, &extra);
        claims["nbf"] = json!(now - 60);
        claims["role"] = json!("guest");
        format!(
            "Bearer {}",
            tokens::key(&keys(), key).unwrap().mint(&claims).unwrap()
        )
    };
    s.allowed(
        "primer_jwks",
        "GET",
        "/people/alice",
        &mint_with("rs256", json!({})),
        None,
    );
    s.allowed(
        "primer_jwks",
        "GET",
        "/people/alice",
        &mint_with("es256", json!({})),
        None,
    );
    for (what, token) in [
        ("attacker key", mint_with("attacker", json!({}))),
        ("key confusion", mint_with("rsa-public-as-hmac", json!({}))),
        (
            "other audience",
            mint_with("rs256", json!({"aud": "billing-api"})),
        ),
    ] {
        let (status, reached, reason) = s.send("primer_jwks", "GET", "/people/alice", &token, None);
        assert_eq!((status, reached), (403, false), "{what}");
        assert_eq!(reason, "policy_denied", "{what}");
    }
    let payload = URL_SAFE_NO_PAD
        .decode(mint_with("rs256", json!({})).split('.').nth(1).unwrap())
        .unwrap();
    let none = mint::unsigned(
        r#"{"alg":"none","kid":"test-rs256"}"#,
        std::str::from_utf8(&payload).unwrap(),
    );
    s.denied(
        "primer_jwks",
        "GET",
        "/people/alice",
        &format!("Bearer {none}"),
        None,
    );

    // The Kong Mesh example decides as under OPA: a well-signed token with
    // an `aud` fails `decode_verify` without an `aud` constraint, so it
    // never allows.
    let kong = mint_with("rs256", json!({"aud": "kong-air-booking"}));
    s.denied("kuma_jwks", "GET", "/people/alice", &kong, None);
}
