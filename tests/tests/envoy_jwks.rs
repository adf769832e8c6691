//! Remote JWKS through real Envoy: keys fetched through a cluster, never
//! a 200 without them, and a key rotation under load that admits no
//! unverified request and produces no 5xx.

use palisade_tests::envoy::{Envoy, Listener};
use palisade_tests::http;
use palisade_tests::jwks_server::JwksServer;
use palisade_tests::upstream::Upstream;
use palisade_tests::{demo_config, keys, tokens};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// `Bearer` token for Alice signed by test key `key` (by its case name).
fn bearer(key: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({"sub": "alice", "roles": ["customer"], "customer_id": "42"});
    let token = tokens::key(&keys(), key)
        .unwrap()
        .mint(&tokens::claims(now, &claims))
        .unwrap();
    format!("Bearer {token}")
}

/// The test JWKS, or only the keys whose `kid` is in `kids`.
fn jwks(kids: &[&str]) -> String {
    let all: Value =
        serde_json::from_str(&std::fs::read_to_string(keys().join("jwks.json")).unwrap()).unwrap();
    let keys: Vec<Value> = all["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| kids.is_empty() || kids.contains(&k["kid"].as_str().unwrap_or_default()))
        .cloned()
        .collect();
    json!({"keys": keys}).to_string()
}

fn remote(when_unavailable: &str) -> Value {
    let mut config = demo_config();
    // The load below is about keys, not budgets.
    config["rate_limits"] = json!([]);
    let provider = &mut config["providers"][0];
    provider.as_object_mut().unwrap().remove("jwks");
    provider["remote_jwks"] = json!({
        "cluster": "idp", "path": "/.well-known/jwks.json", "cache_seconds": 30,
        "timeout_ms": 1000, "when_unavailable": when_unavailable,
    });
    config
}

fn read(port: u16, auth: &str) -> http::Response {
    http::get(port, "/api/v1/customers/42", &[("authorization", auth)])
}

#[test]
fn keys_come_from_the_idp_and_rotate_under_load_without_5xx() {
    let idp = JwksServer::start(503, "down");
    let up = Upstream::start();
    let envoy = Envoy::start_with_clusters(
        up.port,
        &[
            Listener::new("retry", remote("unavailable")),
            Listener::new("deny", remote("deny")),
        ],
        2,
        &[("idp", idp.port)],
    );
    let (retry, deny) = (envoy.port("retry"), envoy.port("deny"));
    let alice = bearer("rs256");

    // The IdP is down: nobody gets in, and Palisade says why.
    assert!(
        idp.wait_for_fetches(0, Duration::from_secs(5)) > 0,
        "Palisade fetches the JWKS at load"
    );
    let r = read(retry, &alice);
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.json()["reason"], "token_keys_unavailable");
    assert!(r.header("retry-after").is_some());
    let r = read(deny, &alice);
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.json()["reason"], "token_keys_unavailable");
    assert_eq!(up.hits(), 0, "nothing reached the upstream without keys");
    // Requests without a token are the policy's to decide, as ever.
    assert_eq!(http::get(retry, "/health", &[]).status, 200);

    // The IdP comes back with only the EdDSA key: fetched after a backoff.
    idp.serve(200, &jwks(&["test-eddsa"]));
    let ed = bearer("eddsa");
    let deadline = Instant::now() + Duration::from_secs(15);
    while read(retry, &ed).status != 200 {
        assert!(Instant::now() < deadline, "keys never arrived");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(read(deny, &ed).status, 200);

    // Rotation: the IdP publishes the RS256 key and clients start using
    // it at once, under load, with forged tokens mixed in.
    idp.serve(200, &jwks(&[]));
    let fetched_before = idp.fetches();
    let forged = bearer("attacker");
    let (ok, unknown, other) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let hits_before = up.hits();
    let started = Instant::now();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (alice, forged) = (alice.clone(), forged.clone());
            let (ok, unknown, other, failures) =
                (ok.clone(), unknown.clone(), other.clone(), failures.clone());
            std::thread::spawn(move || {
                while started.elapsed() < Duration::from_secs(4) {
                    let r = read(retry, &alice);
                    match (r.status, r.json()["reason"].as_str()) {
                        (200, _) => ok.fetch_add(1, Ordering::SeqCst),
                        (401, Some("token_unknown_key")) => unknown.fetch_add(1, Ordering::SeqCst),
                        _ => {
                            failures
                                .lock()
                                .unwrap()
                                .push(format!("alice: {} {}", r.status, r.body));
                            other.fetch_add(1, Ordering::SeqCst)
                        }
                    };
                    if t == 0 {
                        let r = read(retry, &forged);
                        if r.status != 401 {
                            failures
                                .lock()
                                .unwrap()
                                .push(format!("forged: {} {}", r.status, r.body));
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let failures = failures.lock().unwrap().clone();
    assert!(failures.is_empty(), "{failures:#?}");
    let (ok, unknown) = (ok.load(Ordering::SeqCst), unknown.load(Ordering::SeqCst));
    assert!(
        ok > 0,
        "the rotated-in key was never fetched ({unknown} refused)"
    );
    assert_eq!(
        up.hits() - hits_before,
        ok as u64,
        "only verified requests reached the upstream"
    );
    // Unknown kids asked for a refresh once per VM, not once per request.
    let refetches = idp.fetches() - fetched_before;
    assert!(
        refetches <= 8,
        "{refetches} fetches for {unknown} unknown-kid requests"
    );
    println!("rotation under load: {ok} allowed, {unknown} refused before the refresh, {refetches} fetches");
}
