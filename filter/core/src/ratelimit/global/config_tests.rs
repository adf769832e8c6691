use super::*;
use crate::config::Config;
use crate::testutil::*;
use serde_json::{json, Value};

/// 32 bytes, base64.
const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

/// A config with a plain local rule first and `rule` second, so errors in
/// the second one must say `rate_limits[1]`.
fn with_rule(rule: Value) -> Value {
    let mut j = config_json(json!({}), ALLOW_ALL);
    j["rate_limits"] = json!([
        {
            "name": "plain",
            "match": {"path_prefix": "/api/v1/orders"},
            "requests": {"limit": 60, "period_seconds": 60},
        },
        rule,
    ]);
    j
}

fn records_rule(global: Value) -> Value {
    let mut rule = crate::ratelimit::global::bulk_rule_json();
    rule["global"] = global;
    rule
}

fn requests_rule(global: Value) -> Value {
    json!({
        "name": "search",
        "match": {"path_prefix": "/api/v1/search"},
        "requests": {"limit": 10, "period_seconds": 1},
        "global": global,
    })
}

fn load(j: &Value) -> Config {
    Config::from_json(j.to_string().as_bytes()).unwrap()
}

fn global_of(j: &Value) -> GlobalLimit {
    load(j).rate_limits[1].global.clone().unwrap()
}

#[test]
fn defaults_fill_in_and_records_fail_closed() {
    let g = global_of(&with_rule(records_rule(
        json!({"cluster": "palisade_rls", "identity_key": KEY}),
    )));
    assert_eq!(
        g.service,
        Service {
            cluster: "palisade_rls".into(),
            domain: "palisade".into(),
            timeout: Duration::from_millis(20),
        }
    );
    assert_eq!(
        g.on_failure,
        OnFailure::Deny,
        "a records budget fails closed"
    );
    let g = global_of(&with_rule(requests_rule(
        json!({"cluster": "palisade_rls", "identity_key": KEY}),
    )));
    assert_eq!(g.on_failure, OnFailure::Local, "a request rate falls back");
    assert!(load(&with_rule(requests_rule(json!(null)))).rate_limits[1]
        .global
        .is_none());
}

#[test]
fn explicit_values_are_kept() {
    let g = global_of(&with_rule(records_rule(json!({
        "cluster": "rls", "domain": "bulk-api", "timeout_ms": 1000,
        "on_failure": "local", "identity_key": KEY,
    }))));
    assert_eq!(g.service.domain, "bulk-api");
    assert_eq!(g.service.timeout, Duration::from_secs(1));
    assert_eq!(g.on_failure, OnFailure::Local);
    let g = global_of(&with_rule(requests_rule(json!({
        "cluster": "rls", "timeout_ms": 1, "on_failure": "deny", "identity_key": KEY,
    }))));
    assert_eq!(g.service.timeout, Duration::from_millis(1));
    assert_eq!(g.on_failure, OnFailure::Deny);
}

#[test]
fn bad_values_name_their_field() {
    let cases = [
        (
            json!({"cluster": "rls", "timeout_ms": 0, "identity_key": KEY}),
            "rate_limits[1].global.timeout_ms: 0 is not between 1 and 1000",
        ),
        (
            json!({"cluster": "rls", "timeout_ms": 1001, "identity_key": KEY}),
            "rate_limits[1].global.timeout_ms: 1001 is not between 1 and 1000",
        ),
        (
            json!({"cluster": "rls", "timeout_ms": -1, "identity_key": KEY}),
            "rate_limits[1].global.timeout_ms: invalid value",
        ),
        (
            json!({"cluster": "rls", "on_failure": "sometimes", "identity_key": KEY}),
            "rate_limits[1].global.on_failure: `sometimes` is not `deny`",
        ),
        (
            json!({"cluster": "rls", "on_failure": "Deny", "identity_key": KEY}),
            "rate_limits[1].global.on_failure: `Deny` is not",
        ),
        (
            json!({"cluster": "", "identity_key": KEY}),
            "rate_limits[1].global.cluster: must name",
        ),
        (
            json!({"cluster": "rls", "domain": "", "identity_key": KEY}),
            "rate_limits[1].global.domain: must be a non-empty name",
        ),
        (
            json!({"cluster": "rls", "identity_key": "c2hvcnQ="}),
            "rate_limits[1].global.identity_key: 5 bytes; at least 32",
        ),
        (
            json!({"cluster": "rls", "identity_key": "%%%"}),
            "rate_limits[1].global.identity_key: not base64",
        ),
        (
            json!({"identity_key": KEY}),
            "rate_limits[1].global: missing field `cluster`",
        ),
        (
            json!({"cluster": "rls"}),
            "rate_limits[1].global: missing field `identity_key`",
        ),
        (
            json!({"cluster": "rls", "identity_key": KEY, "timeout": 20}),
            "rate_limits[1].global.timeout: unknown field `timeout`",
        ),
        (json!("palisade_rls"), "rate_limits[1].global: invalid type"),
    ];
    for (global, want) in cases {
        let e = load_err(&with_rule(records_rule(global.clone())));
        assert!(e.starts_with(want), "{global}: {e}");
    }
}

#[test]
fn a_rule_must_have_something_to_count() {
    let e = load_err(&with_rule(json!({
        "name": "pages",
        "match": {"path_prefix": "/api"},
        "max_page_size": {"param": "limit", "max": 10},
        "global": {"cluster": "rls", "identity_key": KEY},
    })));
    assert!(
        e.starts_with(
            "rate_limits[1].global: the rule has no requests, records or suspend_seconds"
        ),
        "{e}"
    );
}

#[test]
fn the_key_never_shows() {
    let c = load(&with_rule(records_rule(
        json!({"cluster": "rls", "identity_key": KEY}),
    )));
    let shown = format!("{:?}", c.rate_limits);
    assert!(shown.contains("IdentityKey(<redacted>)"));
    assert!(
        !shown.contains("48, 49, 50"),
        "key bytes (\"012\") must not print"
    );
    // The error for a bad key does not quote it either.
    let secret = "c2VjcmV0LXRvby1zaG9ydA==";
    let e = load_err(&with_rule(records_rule(
        json!({"cluster": "rls", "identity_key": secret}),
    )));
    assert!(!e.contains(secret), "{e}");
}

#[test]
fn a_cluster_name_past_what_envoy_names_is_refused() {
    let mut rule = super::super::bulk_rule_json();
    rule["global"] = serde_json::json!({"cluster": "c".repeat(121),
        "identity_key": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="});
    let raw = serde_json::from_value(rule).unwrap();
    let err = crate::ratelimit::rule::Rule::compile(&raw, "rate_limits[0]").unwrap_err();
    assert!(
        err.contains("rate_limits[0].global.cluster: at most 120"),
        "{err}"
    );
}
