use super::*;
use crate::testutil::*;
use crate::token::verify::verify_with;
use crate::token::TokenError;
use serde_json::json;

const SECOND: Duration = Duration::from_secs(1);

fn remote_config(extra: serde_json::Value) -> crate::config::Config {
    let mut remote = json!({"cluster": "idp", "path": "/jwks.json", "cache_seconds": 300});
    if let (Some(r), Some(e)) = (remote.as_object_mut(), extra.as_object()) {
        r.extend(e.clone());
    }
    config(json!({"jwks": null, "remote_jwks": remote}), ALLOW_ALL)
}

fn token() -> String {
    rs256().mint(&claims()).unwrap()
}

fn check(c: &crate::config::Config, keys: &RemoteKeys) -> Result<(), TokenError> {
    verify_with(token().as_bytes(), "authorization", &c.providers, keys, NOW).map(|_| ())
}

#[test]
fn no_keys_yet_means_no_verification_with_the_configured_answer() {
    let c = remote_config(json!({}));
    let keys = RemoteKeys::new(&c.providers);
    assert_eq!(
        check(&c, &keys),
        Err(TokenError::KeysUnavailable { retry: true })
    );
    let deny = remote_config(json!({"when_unavailable": "deny"}));
    assert_eq!(
        check(&deny, &RemoteKeys::new(&deny.providers)),
        Err(TokenError::KeysUnavailable { retry: false })
    );
}

#[test]
fn fetched_keys_verify_and_a_bad_answer_keeps_them() {
    let c = remote_config(json!({}));
    let p = &c.providers[0];
    let mut keys = RemoteKeys::new(&c.providers);
    assert_eq!(keys.due(&c.providers, NOW), vec![0], "fetched at once");
    assert!(
        keys.due(&c.providers, NOW).is_empty(),
        "one fetch in flight"
    );
    let installed = keys.fetched(0, p, Some(200), JWKS.as_bytes(), NOW).unwrap();
    assert!(installed.changed && installed.keys >= 3, "{installed:?}");
    assert_eq!(check(&c, &keys), Ok(()));

    // Next fetch on schedule, not before.
    assert!(keys.due(&c.providers, NOW + 299 * SECOND).is_empty());
    assert_eq!(keys.due(&c.providers, NOW + 300 * SECOND), vec![0]);
    // An outage, an error page, garbage, an empty set: the keys stay.
    for (status, body) in [
        (None, &b""[..]),
        (Some(500), b"oops"),
        (Some(200), b"<html>"),
        (Some(200), br#"{"keys": []}"#),
        (Some(200), br#"{"kys": []}"#),
    ] {
        let later = NOW + 300 * SECOND;
        assert!(keys.fetched(0, p, status, body, later).is_err());
        assert_eq!(check(&c, &keys), Ok(()), "{status:?}");
    }
    // A weak key in the answer refuses the whole answer, as inline.
    assert!(keys
        .fetched(0, p, Some(200), WEAK_JWKS.as_bytes(), NOW + 301 * SECOND)
        .is_err());
    assert_eq!(check(&c, &keys), Ok(()));
}

#[test]
fn failures_back_off_and_a_fetch_that_never_answers_is_retried() {
    let c = remote_config(json!({"timeout_ms": 1000}));
    let p = &c.providers[0];
    let mut keys = RemoteKeys::new(&c.providers);
    assert_eq!(keys.due(&c.providers, NOW), vec![0]);
    // No answer at all: after the timeout (plus a margin) it goes out again.
    assert!(keys.due(&c.providers, NOW + SECOND).is_empty());
    assert_eq!(keys.due(&c.providers, NOW + 2 * SECOND), vec![0]);
    // Failed answers: 1, 2, 4 s apart.
    let mut t = NOW + 2 * SECOND;
    for wait in [1, 2, 4] {
        assert!(keys.fetched(0, p, Some(503), b"", t).is_err());
        assert!(keys.due(&c.providers, t + (wait - 1) * SECOND).is_empty());
        t += wait * SECOND;
        assert_eq!(keys.due(&c.providers, t), vec![0], "after {wait} s");
    }
    keys.failed(0, t);
    assert!(keys.due(&c.providers, t).is_empty());
}

#[test]
fn an_unknown_kid_asks_for_a_fetch_at_most_once_a_minute() {
    let c = remote_config(json!({}));
    let p = &c.providers[0];
    let mut keys = RemoteKeys::new(&c.providers);
    keys.due(&c.providers, NOW);
    // Only the EdDSA key is published: the RS256 token's kid is unknown.
    let jwks: serde_json::Value = serde_json::from_str(JWKS).unwrap();
    let only_ed = json!({"keys": jwks["keys"].as_array().unwrap().iter()
        .filter(|k| k["kid"] == "test-eddsa").cloned().collect::<Vec<_>>()});
    let only_ed = only_ed.to_string();
    keys.fetched(0, p, Some(200), only_ed.as_bytes(), NOW)
        .unwrap();
    assert_eq!(check(&c, &keys), Err(TokenError::UnknownKey));
    assert_eq!(keys.due(&c.providers, NOW + SECOND), vec![0], "rotation?");
    keys.fetched(0, p, Some(200), only_ed.as_bytes(), NOW + SECOND)
        .unwrap();
    // A flood of unknown kids within the minute: no more fetches.
    for s in 2..60 {
        assert_eq!(check(&c, &keys), Err(TokenError::UnknownKey));
        assert!(keys.due(&c.providers, NOW + s * SECOND).is_empty(), "{s}");
    }
    assert_eq!(check(&c, &keys), Err(TokenError::UnknownKey));
    assert_eq!(keys.due(&c.providers, NOW + 61 * SECOND), vec![0]);
    // The rotated-in key arrives: the token verifies, and the set changed.
    let installed = keys
        .fetched(0, p, Some(200), JWKS.as_bytes(), NOW + 61 * SECOND)
        .unwrap();
    assert!(installed.changed);
    assert_eq!(check(&c, &keys), Ok(()));
    let again = keys
        .fetched(0, p, Some(200), JWKS.as_bytes(), NOW + 400 * SECOND)
        .unwrap();
    assert!(!again.changed, "the same set is no change");
    // A key replaced under the same kid (a compromised key swapped out)
    // is a change: cached verifications made with it must go.
    let mut swapped: serde_json::Value = serde_json::from_str(JWKS).unwrap();
    let attacker: serde_json::Value = serde_json::from_str(ATTACKER_JWKS).unwrap();
    swapped["keys"][0]["n"] = attacker["keys"][0]["n"].clone();
    assert_eq!(swapped["keys"][0]["kid"], "test-rs256");
    let replaced = keys
        .fetched(
            0,
            p,
            Some(200),
            swapped.to_string().as_bytes(),
            NOW + 700 * SECOND,
        )
        .unwrap();
    assert!(replaced.changed, "same kids, another key");
    assert_eq!(check(&c, &keys), Err(TokenError::BadSignature));
}

#[test]
fn inline_providers_have_no_slot_and_configs_name_their_field() {
    let c = config(json!({}), ALLOW_ALL);
    let mut keys = RemoteKeys::new(&c.providers);
    assert!(keys.due(&c.providers, NOW).is_empty());
    assert!(keys.keys(0).is_none());
    for (changes, field) in [
        (
            json!({"remote_jwks": {"cluster": "idp", "path": "/j"}}),
            "providers[0].remote_jwks: ",
        ),
        (json!({"jwks": null}), "providers[0].jwks: "),
        (
            json!({"jwks": null, "remote_jwks": {"cluster": "idp", "path": "j"}}),
            "providers[0].remote_jwks.path: ",
        ),
        (
            json!({"jwks": null, "remote_jwks": {"cluster": "", "path": "/j"}}),
            "providers[0].remote_jwks.cluster: ",
        ),
        (
            json!({"jwks": null, "remote_jwks": {"cluster": "idp", "path": "/j", "cache_seconds": 5}}),
            "providers[0].remote_jwks.cache_seconds: ",
        ),
        (
            json!({"jwks": null, "remote_jwks": {"cluster": "idp", "path": "/j", "when_unavailable": "allow"}}),
            "providers[0].remote_jwks.when_unavailable: ",
        ),
        (
            json!({"jwks": null, "remote_jwks": {"cluster": "idp", "path": "/j", "url": "x"}}),
            "providers[0].remote_jwks.url: unknown field",
        ),
    ] {
        let e = load_err(&config_json(changes.clone(), ALLOW_ALL));
        assert!(e.starts_with(field), "{changes}: {e}");
    }
}
