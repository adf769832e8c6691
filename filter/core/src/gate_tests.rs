use super::*;
use crate::request::Headers;
use crate::testutil::*;
use serde_json::json;

const POLICY: &str = r#"package envoy.authz
default allow := false
allow if input.attributes.request.http.path == "/health"
allow if input.token.payload.sub == "alice"
"#;

fn request(auth: Option<&str>, path: &str) -> Request {
    let mut pairs = vec![
        (b":method".to_vec(), b"GET".to_vec()),
        (b":path".to_vec(), path.as_bytes().to_vec()),
    ];
    if let Some(a) = auth {
        pairs.push((b"authorization".to_vec(), a.as_bytes().to_vec()));
    }
    Request {
        headers: Headers::from_pairs(pairs),
        ..Request::default()
    }
}

fn decide(config: &Config, auth: Option<&str>, path: &str) -> Evaluation {
    config.decide(
        &request(auth, path),
        NOW,
        &mut TokenCache::new(16),
        &no_limits(),
    )
}

fn no_limits() -> crate::ratelimit::limits::Limits {
    crate::ratelimit::limits::Limits::none(std::rc::Rc::new(
        crate::ratelimit::store::MemoryStore::default(),
    ))
}

fn kind(e: &Evaluation) -> Option<DenialKind> {
    match &e.decision {
        Decision::Deny(d) => Some(d.kind.clone()),
        Decision::Allow(_) => None,
    }
}

#[test]
fn valid_token_reaches_the_policy() {
    let c = config(json!({}), POLICY);
    let t = format!("Bearer {}", rs256().mint(&claims()).unwrap());
    let e = decide(&c, Some(&t), "/api");
    assert_eq!(e.reason(), "allowed");
    assert_eq!(e.subject(), Some("alice"));
    assert!(e.enforced);
}

#[test]
fn invalid_token_denies_without_policy() {
    // The policy would allow /health, but a bad token is refused before it.
    let c = config(json!({}), POLICY);
    let t = format!("Bearer {}", attacker().mint(&claims()).unwrap());
    let e = decide(&c, Some(&t), "/health");
    assert_eq!(
        kind(&e),
        Some(DenialKind::InvalidToken(TokenError::BadSignature))
    );
    assert_eq!(e.reason(), "token_bad_signature");
}

#[test]
fn no_token_lets_the_policy_decide() {
    let c = config(json!({}), POLICY);
    assert_eq!(decide(&c, None, "/health").reason(), "allowed");
    let e = decide(&c, None, "/api");
    assert_eq!(kind(&e), Some(DenialKind::Unauthenticated));
    assert_eq!(e.reason(), "policy_denied");
}

#[test]
fn a_workload_with_an_mtls_identity_is_forbidden_not_asked_for_a_token() {
    let c = config(json!({}), POLICY);
    let mut r = request(None, "/api");
    r.source_principal = Some("spiffe://corp/ns/shop/sa/intruder".into());
    let e = c.decide(&r, NOW, &mut TokenCache::new(16), &no_limits());
    assert_eq!(kind(&e), Some(DenialKind::Forbidden));
    assert_eq!(e.reason(), "policy_denied");
}

#[test]
fn a_step_up_request_from_the_policy_is_its_own_kind() {
    let c = config(
        json!({}),
        "package envoy.authz\nallow := {\"allowed\": false, \"step_up\": {\"max_age\": 60}}\n",
    );
    let e = decide(&c, None, "/api");
    assert_eq!(
        kind(&e),
        Some(DenialKind::StepUp(crate::decision::StepUp {
            acr_values: None,
            max_age: Some(60)
        }))
    );
    assert_eq!(e.reason(), "step_up_required");
}

#[test]
fn authenticated_denial_is_forbidden() {
    let c = config(json!({}), POLICY);
    let t = format!(
        "Bearer {}",
        rs256().mint(&claims_with(json!({"sub": "bob"}))).unwrap()
    );
    assert_eq!(
        kind(&decide(&c, Some(&t), "/api")),
        Some(DenialKind::Forbidden)
    );
}

#[test]
fn policy_error_fails_closed_as_forbidden() {
    let c = config(
        json!({}),
        "package envoy.authz\nallow if to_number(\"abc\") > 1\n",
    );
    let e = decide(&c, None, "/health");
    assert_eq!(kind(&e), Some(DenialKind::Forbidden));
    assert_eq!(e.reason(), "policy_error");
}

#[test]
fn dry_run_marks_the_evaluation_unenforced() {
    let mut j = config_json(json!({}), POLICY);
    j["mode"] = json!("dry_run");
    let c = Config::from_json(j.to_string().as_bytes()).unwrap();
    let e = decide(&c, None, "/api");
    assert!(!e.enforced);
    assert_eq!(e.reason(), "policy_denied");
}

#[test]
fn verified_tokens_are_cached_until_exp() {
    let c = config(json!({}), POLICY);
    let token = rs256()
        .mint(&claims_with(json!({"exp": NOW_SECS + 60})))
        .unwrap();
    let r = request(Some(&format!("Bearer {token}")), "/api");
    let mut cache = TokenCache::new(16);
    assert_eq!(
        c.decide(&r, NOW, &mut cache, &no_limits()).reason(),
        "allowed"
    );
    assert_eq!(cache.len(), 1);
    assert_eq!(
        c.decide(&r, NOW + Duration::from_secs(30), &mut cache, &no_limits())
            .reason(),
        "allowed"
    );
    // At exp the entry is dropped; within leeway the token re-verifies but is not re-cached.
    assert_eq!(
        c.decide(&r, NOW + Duration::from_secs(60), &mut cache, &no_limits())
            .reason(),
        "allowed"
    );
    assert!(cache.is_empty());
    assert_eq!(
        c.decide(&r, NOW + Duration::from_secs(90), &mut cache, &no_limits())
            .reason(),
        "token_expired"
    );
}

#[test]
fn a_cached_token_still_expires() {
    let c = config(json!({}), POLICY);
    let token = rs256()
        .mint(&claims_with(json!({"exp": NOW_SECS + 60})))
        .unwrap();
    let r = request(Some(&format!("Bearer {token}")), "/api");
    let mut cache = TokenCache::new(16);
    c.decide(&r, NOW, &mut cache, &no_limits());
    let later = NOW + Duration::from_secs(60 + 30);
    assert_eq!(
        c.decide(&r, later, &mut cache, &no_limits()).reason(),
        "token_expired"
    );
}

#[test]
fn two_tokens_are_invalid() {
    let c = config(json!({}), POLICY);
    let t = rs256().mint(&claims()).unwrap();
    let e = decide(&c, Some(&format!("Bearer {t} {t}")), "/api");
    assert_eq!(e.reason(), "token_multiple");
}

#[test]
fn every_decision_names_the_policy_in_force_even_before_it_runs() {
    let c = config(json!({}), POLICY);
    let revision = c
        .policy
        .fixed()
        .unwrap()
        .revision
        .get(..16)
        .map(str::to_owned);
    assert!(revision.is_some());
    let bad = decide(&c, Some("Bearer not.a.token"), "/health");
    assert_eq!(bad.reason(), "token_malformed");
    assert_eq!(bad.policy_revision, revision, "a token denial");
    let t = format!("Bearer {}", rs256().mint(&claims()).unwrap());
    assert_eq!(decide(&c, Some(&t), "/api").policy_revision, revision);
}
