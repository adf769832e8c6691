//! One negative test per verification rule, plus the happy paths.

use super::*;
use crate::mint::{unsigned, SigningKey};
use crate::testutil::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;

fn providers() -> Vec<Provider> {
    config(json!({}), ALLOW_ALL).providers
}

fn check(token: &str) -> Result<VerifiedToken, TokenError> {
    verify(token.as_bytes(), "authorization", &providers(), NOW)
}

fn check_at(token: &str, now_secs: u64) -> Result<VerifiedToken, TokenError> {
    verify(
        token.as_bytes(),
        "authorization",
        &providers(),
        Duration::from_secs(now_secs),
    )
}

fn err(token: &str) -> TokenError {
    check(token)
        .err()
        .unwrap_or_else(|| panic!("token verified but must not: {token}"))
}

#[test]
fn valid_tokens_of_each_algorithm_verify() {
    for key in [rs256(), es256(), eddsa()] {
        let t = check(&key.mint(&claims()).unwrap()).unwrap_or_else(|e| panic!("{}: {e}", key.alg));
        assert_eq!(t.subject(), Some("alice"));
        assert_eq!(t.provider, "test");
        assert_eq!(t.expires_at, (NOW_SECS + 600) as f64);
    }
}

#[test]
fn token_without_kid_tries_keys_of_its_algorithm() {
    let key = rs256();
    let header = json!({"alg": "RS256", "typ": "JWT"}).to_string();
    let token = key.sign_raw(&header, &claims().to_string()).unwrap();
    assert!(check(&token).is_ok());
}

#[test]
fn alg_none_in_any_casing_never_verifies() {
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = json!({"alg": alg, "kid": "test-rs256"}).to_string();
        let token = unsigned(&header, &claims().to_string());
        assert_eq!(err(&token), TokenError::AlgNotAllowed, "{alg}");
        assert_eq!(
            err(&format!("{token}c2ln")),
            TokenError::AlgNotAllowed,
            "{alg}"
        );
    }
}

#[test]
fn empty_signature_never_verifies() {
    let token = rs256().mint(&claims()).unwrap();
    let (signed, _) = token.rsplit_once('.').unwrap();
    assert_eq!(err(&format!("{signed}.")), TokenError::BadSignature);
}

#[test]
fn algorithm_outside_allow_list_is_refused() {
    let p = config(
        json!({"algorithms": ["ES256"], "jwks": {"keys": [es_jwk()]}}),
        ALLOW_ALL,
    )
    .providers;
    let token = rs256().mint(&claims()).unwrap();
    assert_eq!(
        verify(token.as_bytes(), "authorization", &p, NOW).unwrap_err(),
        TokenError::AlgNotAllowed
    );
}

fn es_jwk() -> serde_json::Value {
    serde_json::from_str::<serde_json::Value>(JWKS).unwrap()["keys"][1].clone()
}

#[test]
fn hs256_signed_with_the_rsa_public_key_is_refused() {
    // Key confusion: the attacker HMACs with the RSA public key bytes as secret.
    let rsa_n = serde_json::from_str::<serde_json::Value>(JWKS).unwrap()["keys"][0]["n"]
        .as_str()
        .unwrap()
        .to_owned();
    let forged = SigningKey::from_secret(Alg::HS256, Some("test-rs256"), rsa_n.as_bytes()).unwrap();
    let token = forged.mint(&claims()).unwrap();
    assert_eq!(err(&token), TokenError::AlgNotAllowed);

    // Even a provider that allows HS256 refuses an HS token against an RSA kid.
    let p = config(json!({"algorithms": ["RS256", "HS256"]}), ALLOW_ALL).providers;
    assert_eq!(
        verify(token.as_bytes(), "authorization", &p, NOW).unwrap_err(),
        TokenError::KeyMismatch
    );
}

#[test]
fn es256_token_claiming_the_rsa_kid_is_refused() {
    let key = SigningKey::from_pem(
        Alg::ES256,
        Some("test-rs256"),
        include_bytes!("../../../../envoy/test-keys/es256.key.pem"),
    )
    .unwrap();
    assert_eq!(err(&key.mint(&claims()).unwrap()), TokenError::KeyMismatch);
}

#[test]
fn signature_from_another_key_with_the_same_kid_is_refused() {
    assert_eq!(
        err(&attacker().mint(&claims()).unwrap()),
        TokenError::BadSignature
    );
}

#[test]
fn flipped_or_truncated_signature_is_refused() {
    let token = rs256().mint(&claims()).unwrap();
    let (head, sig) = token.rsplit_once('.').unwrap();
    let mut bytes = URL_SAFE_NO_PAD.decode(sig).unwrap();
    bytes[10] ^= 0x01;
    assert_eq!(
        err(&format!("{head}.{}", URL_SAFE_NO_PAD.encode(&bytes))),
        TokenError::BadSignature
    );
    assert_eq!(
        err(&format!("{head}.{}", &sig[..sig.len() - 4])),
        TokenError::BadSignature
    );
}

#[test]
fn changed_payload_breaks_the_signature() {
    let token = rs256().mint(&claims()).unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    let evil = URL_SAFE_NO_PAD.encode(claims_with(json!({"sub": "admin"})).to_string());
    assert_eq!(
        err(&format!("{}.{evil}.{}", parts[0], parts[2])),
        TokenError::BadSignature
    );
}

#[test]
fn unknown_kid_is_refused_and_never_a_path() {
    for kid in [
        "nope",
        "../test-rs256",
        "test-rs256 ",
        "TEST-RS256",
        "https://evil/jwks.json#test-rs256",
    ] {
        let mut key = rs256();
        key.kid = Some(kid.into());
        assert_eq!(
            err(&key.mint(&claims()).unwrap()),
            TokenError::UnknownKey,
            "{kid}"
        );
    }
}

#[test]
fn jku_x5u_and_embedded_jwk_are_ignored() {
    // The attacker signs with its own key and points at it every way JOSE allows.
    let attacker_jwk =
        serde_json::from_str::<serde_json::Value>(ATTACKER_JWKS).unwrap()["keys"][0].clone();
    let header = json!({
        "alg": "RS256", "kid": "test-rs256",
        "jku": "https://evil.test/jwks.json", "x5u": "https://evil.test/cert.pem", "jwk": attacker_jwk,
    });
    let token = attacker()
        .sign_raw(&header.to_string(), &claims().to_string())
        .unwrap();
    assert_eq!(err(&token), TokenError::BadSignature);
}

#[test]
fn crit_header_is_refused() {
    let header = json!({"alg": "RS256", "kid": "test-rs256", "crit": ["exp"]});
    let token = rs256()
        .sign_raw(&header.to_string(), &claims().to_string())
        .unwrap();
    assert_eq!(err(&token), TokenError::Crit);
}

#[test]
fn issuer_must_match_exactly_and_be_a_string() {
    for iss in [
        json!("https://idp.palisade.test/"),
        json!("HTTPS://IDP.PALISADE.TEST"),
        json!("https://evil.test"),
    ] {
        let t = rs256().mint(&claims_with(json!({"iss": iss}))).unwrap();
        assert_eq!(err(&t), TokenError::BadIssuer, "{iss}");
    }
    let t = rs256()
        .mint(&claims_with(json!({"iss": [ISSUER]})))
        .unwrap();
    assert_eq!(err(&t), TokenError::ClaimType("iss must be a string"));
    let t = rs256().mint(&claims_with(json!({"iss": null}))).unwrap();
    assert_eq!(err(&t), TokenError::BadIssuer);
}

#[test]
fn audience_must_contain_a_configured_one() {
    assert!(check(
        &rs256()
            .mint(&claims_with(json!({"aud": ["other", AUDIENCE]})))
            .unwrap()
    )
    .is_ok());
    for aud in [json!("other"), json!(["other"]), json!([])] {
        let t = rs256().mint(&claims_with(json!({"aud": aud}))).unwrap();
        assert_eq!(err(&t), TokenError::BadAudience, "{aud}");
    }
    let t = rs256().mint(&claims_with(json!({"aud": null}))).unwrap();
    assert_eq!(err(&t), TokenError::BadAudience);
    for aud in [
        json!(1),
        json!({"a": AUDIENCE}),
        json!([AUDIENCE, 1]),
        json!(true),
    ] {
        let t = rs256().mint(&claims_with(json!({"aud": aud}))).unwrap();
        assert!(matches!(err(&t), TokenError::ClaimType(_)), "{aud}");
    }
}

#[test]
fn exp_is_required_and_numeric() {
    let t = rs256().mint(&claims_with(json!({"exp": null}))).unwrap();
    assert_eq!(err(&t), TokenError::MissingExp);
    for exp in [json!("9999999999"), json!(null), json!([1])] {
        if exp.is_null() {
            continue;
        }
        let t = rs256().mint(&claims_with(json!({"exp": exp}))).unwrap();
        assert_eq!(
            err(&t),
            TokenError::ClaimType("exp must be a number"),
            "{exp}"
        );
    }
}

#[test]
fn expiry_honours_leeway() {
    let t = rs256()
        .mint(&claims_with(json!({"exp": NOW_SECS})))
        .unwrap();
    assert!(check_at(&t, NOW_SECS + 29).is_ok(), "within 30 s leeway");
    assert_eq!(
        check_at(&t, NOW_SECS + 30).unwrap_err(),
        TokenError::Expired
    );
}

#[test]
fn nbf_in_the_future_is_refused_beyond_leeway() {
    let t = rs256()
        .mint(&claims_with(json!({"nbf": NOW_SECS + 31})))
        .unwrap();
    assert_eq!(err(&t), TokenError::NotYetValid);
    let t = rs256()
        .mint(&claims_with(json!({"nbf": NOW_SECS + 30})))
        .unwrap();
    assert!(check(&t).is_ok());
    let t = rs256().mint(&claims_with(json!({"nbf": "soon"}))).unwrap();
    assert_eq!(err(&t), TokenError::ClaimType("nbf must be a number"));
}

#[test]
fn iat_in_the_future_is_refused_beyond_leeway() {
    let t = rs256()
        .mint(&claims_with(json!({"iat": NOW_SECS + 31})))
        .unwrap();
    assert_eq!(err(&t), TokenError::IssuedInFuture);
    let t = rs256().mint(&claims_with(json!({"iat": false}))).unwrap();
    assert_eq!(err(&t), TokenError::ClaimType("iat must be a number"));
}

#[test]
fn lifetime_over_the_maximum_is_refused() {
    let t = rs256()
        .mint(&claims_with(
            json!({"iat": NOW_SECS, "exp": NOW_SECS + 86_401}),
        ))
        .unwrap();
    assert_eq!(err(&t), TokenError::LifetimeTooLong);
    let t = rs256()
        .mint(&claims_with(
            json!({"iat": NOW_SECS, "exp": NOW_SECS + 86_400}),
        ))
        .unwrap();
    assert!(check(&t).is_ok());
    // Without iat, the remaining lifetime counts.
    let t = rs256()
        .mint(&claims_with(json!({"iat": null, "exp": NOW_SECS + 90_000})))
        .unwrap();
    assert_eq!(err(&t), TokenError::LifetimeTooLong);
}

#[test]
fn oversized_token_is_refused_unparsed() {
    let big = "a".repeat(MAX_TOKEN_BYTES + 1);
    assert_eq!(err(&big), TokenError::TooLarge);
    let padded = rs256()
        .mint(&claims_with(json!({"pad": "x".repeat(7000)})))
        .unwrap();
    assert!(padded.len() > MAX_TOKEN_BYTES);
    assert_eq!(err(&padded), TokenError::TooLarge);
}

#[test]
fn duplicate_claim_or_header_names_are_refused() {
    let payload = format!(
        r#"{{"iss":"{ISSUER}","aud":"{AUDIENCE}","sub":"alice","sub":"admin","exp":{}}}"#,
        NOW_SECS + 60
    );
    let t = rs256()
        .sign_raw(&rs256().header().to_string(), &payload)
        .unwrap();
    assert_eq!(err(&t), TokenError::DuplicateName);
    let header = r#"{"alg":"RS256","kid":"test-rs256","kid":"other"}"#;
    let t = rs256().sign_raw(header, &claims().to_string()).unwrap();
    assert_eq!(err(&t), TokenError::DuplicateName);
}

#[test]
fn claim_type_confusion_is_refused() {
    let t = rs256().mint(&claims_with(json!({"sub": 42}))).unwrap();
    assert_eq!(err(&t), TokenError::ClaimType("sub must be a string"));
}

#[test]
fn malformed_tokens_are_refused() {
    let good = rs256().mint(&claims()).unwrap();
    let parts: Vec<&str> = good.split('.').collect();
    for bad in [
        "".to_owned(),
        "abc".to_owned(),
        "a.b".to_owned(),
        format!("{}.{}", parts[0], parts[1]),
        format!("{good}="),
        format!("{}.{}+/.{}", parts[0], parts[1], parts[2]),
        format!("{}.{}.{}.", parts[0], parts[1], parts[2]),
        format!("bm90IGpzb24.{}.{}", parts[1], parts[2]),
        format!("{}.bm90IGpzb24.{}", parts[0], parts[2]),
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode("[1]"),
            parts[1],
            parts[2]
        ),
        format!("{}.{}.{}", parts[0], parts[1], "!!!"),
    ] {
        assert!(matches!(err(&bad), TokenError::Malformed(_)), "{bad}");
    }
}

#[test]
fn jwe_and_json_serialization_are_unsupported() {
    assert_eq!(
        err("eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d"),
        TokenError::Unsupported
    );
    assert_eq!(
        err(r#"{"payload":"x","signatures":[]}"#),
        TokenError::Unsupported
    );
}

#[test]
fn token_from_a_header_no_provider_reads_is_refused() {
    let t = rs256().mint(&claims()).unwrap();
    assert_eq!(
        verify(t.as_bytes(), "x-other", &providers(), NOW).unwrap_err(),
        TokenError::BadIssuer
    );
}

#[test]
fn second_provider_with_same_issuer_is_tried() {
    let mut json = config_json(json!({"audiences": ["other-api"]}), ALLOW_ALL);
    let mut second = provider_json(json!({"name": "second"}));
    second["audiences"] = json!([AUDIENCE]);
    json["providers"].as_array_mut().unwrap().push(second);
    let p = Config::from_json(json.to_string().as_bytes())
        .unwrap()
        .providers;
    let t = rs256().mint(&claims()).unwrap();
    let v = verify(t.as_bytes(), "authorization", &p, NOW).unwrap();
    assert_eq!(v.provider, "second");
}

use crate::config::Config;

#[test]
fn serde_json_number_marker_cannot_hide_claims() {
    let payload = format!(
        r#"{{"iss":"{ISSUER}","aud":"{AUDIENCE}","sub":"alice","exp":{},"x":{{"$serde_json::private::Number":"oops"}}}}"#,
        NOW_SECS + 60
    );
    let t = rs256()
        .sign_raw(&rs256().header().to_string(), &payload)
        .unwrap();
    assert!(matches!(err(&t), TokenError::Malformed(_)));
}
