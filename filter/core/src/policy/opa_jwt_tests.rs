//! The `io.jwt` builtins through real Rego (`Policy::compile` and
//! `evaluate_at`), and through their Rust functions where the reason a
//! token is refused matters. Every refusal test has a positive control: the
//! same token, minus the one flaw, verifies.

use super::constraints::{self, Constraints};
use super::keys::{self, KeyCache};
use super::*;
use crate::mint::{unsigned, SigningKey};
use crate::policy::{Policy, PolicyOptions, RegoVersion};
use crate::testutil::{self, eddsa, es256, rs256, AUDIENCE, ISSUER, JWKS, NOW, NOW_SECS};
use crate::token::TokenError;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value as Json};
use std::collections::BTreeMap;

// TEST-ONLY public halves of the keys in envoy/test-keys, made with
// `openssl pkey -pubout` and `openssl req -x509 -new -key ...`.
const RS256_PUBLIC_PEM: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA6AQeMqahDcRtUtj9D0jV
XyZ5OQlnw3mXuKjCxZDvZsBG5+vYvPsP6K9HPeaVGBMC7TtmbfnmSk2BYCfPS+cf
iJU2RA2x9tVwuBmmz1njPdqIXlUN3/XJGD6qwlyA4cdK3FHDw0PuvobR1v1/MbJM
u6U61jt+iEjAJo0IBdA9IQSq5NSMptdwHDCxt00l1ORYmLBCqHxid0kn5/WbLY1Q
L6n0ag/inghEB+8h6ggFvmwhtsfJOAq0MOkDqZohZLJ6HpJgiTGPiuOLwDbkRf59
vwCLw9GAl3GWDSxBXHIkpiTuidEIL1JyOy+bXI5PeTW7t19ZSsLri+mX7XGfJcoD
oQIDAQAB
-----END PUBLIC KEY-----
";

const RS256_CERT_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIDHDCCAgSgAwIBAgIBATANBgkqhkiG9w0BAQsFADAmMSQwIgYDVQQDDBtpZHAu
cGFsaXNhZGUudGVzdCBURVNULU9OTFkwIBcNMjYxMTI5MDg1NzMxWhgPMjEyNjEx
MDUwODU3MzFaMCYxJDAiBgNVBAMMG2lkcC5wYWxpc2FkZS50ZXN0IFRFU1QtT05M
WTCCASIwDQYJKoZIhvcNAQEBBQADggEPADCCAQoCggEBAOgEHjKmoQ3EbVLY/Q9I
1V8meTkJZ8N5l7iowsWQ72bARufr2Lz7D+ivRz3mlRgTAu07Zm355kpNgWAnz0vn
H4iVNkQNsfbVcLgZps9Z4z3aiF5VDd/1yRg+qsJcgOHHStxRw8ND7r6G0db9fzGy
TLulOtY7fohIwCaNCAXQPSEEquTUjKbXcBwwsbdNJdTkWJiwQqh8YndJJ+f1my2N
UC+p9GoP4p4IRAfvIeoIBb5sIbbHyTgKtDDpA6maIWSyeh6SYIkxj4rji8A25EX+
fb8Ai8PRgJdxlg0sQVxyJKYk7onRCC9Scjsvm1yOT3k1u7dfWUrC64vpl+1xnyXK
A6ECAwEAAaNTMFEwHQYDVR0OBBYEFP9MSjulisjEEcaWEaXrwtqYrWvVMB8GA1Ud
IwQYMBaAFP9MSjulisjEEcaWEaXrwtqYrWvVMA8GA1UdEwEB/wQFMAMBAf8wDQYJ
KoZIhvcNAQELBQADggEBAG0pRyLi+SRrspEdrnv0nBZcdUNJUKhQvmTrtbXT9T8n
Z1PWa/iePAYHCbuPcmj8Fa38Rx6oZfo2/SqMuWulWTzOqNaPtVESeZ0mAgVCCSKz
hRC8d9adLF3cfBVkAZyMJC6xTWrNszEQo31ir04EP6i5t9GbvdH2ReFBqRizqT86
1eUDrjhO1+CGnvChDV/HjKNlFjxMD834VN8LDz0Aa1ruHt3EPLB0Qhs4SIjx5ob0
UP6ha/edwlNKXD9Gvm3dZiSVoYZTJJAJm1kr8M2Tx+UMzr0eK71YBfxVE0Dk20r8
P4eMmdX72ArrdKCQcHdZN6N7itN90ECymp+fJzaI5x4=
-----END CERTIFICATE-----
";

const ES256_PUBLIC_PEM: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEMadyLK/fimFuEtpu3Zi5tk3L0G43
lVHf4OrKr+EqCURvcHD8xNAsC40sXg7mbtTgkf9O0Xrvi8alDOymjgwNUQ==
-----END PUBLIC KEY-----
";

const ES256_CERT_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBjzCCATagAwIBAgIBAjAKBggqhkjOPQQDAjAmMSQwIgYDVQQDDBtpZHAucGFs
aXNhZGUudGVzdCBURVNULU9OTFkwIBcNMjYxMTI5MDg1NzMxWhgPMjEyNjExMDUw
ODU3MzFaMCYxJDAiBgNVBAMMG2lkcC5wYWxpc2FkZS50ZXN0IFRFU1QtT05MWTBZ
MBMGByqGSM49AgEGCCqGSM49AwEHA0IABDGnciyv34phbhLabt2YubZNy9BuN5VR
3+Dqyq/hKglEb3Bw/MTQLAuNLF4O5m7U4JH/TtF674vGpQzspo4MDVGjUzBRMB0G
A1UdDgQWBBTlaBXD7I/fQfVBSXjX4yyAuZLWgDAfBgNVHSMEGDAWgBTlaBXD7I/f
QfVBSXjX4yyAuZLWgDAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0cAMEQC
IHXKqV9smOw4SKKh+mJlxW1CQEdF8w32hrEGcrOT+V71AiBAzrxHyOv1evdGohjz
qpHshyErWl2wFMn8FkNzT6hACQ==
-----END CERTIFICATE-----
";

const EDDSA_PUBLIC_PEM: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAuYllxwOQN+K8p5ybzUqS4h6Pnw3exXp7iIyf0lhrxAk=
-----END PUBLIC KEY-----
";

const WEAK_RSA1024_PUBLIC_PEM: &str = "-----BEGIN PUBLIC KEY-----
MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDc+PmoskjR/DaQ+rRszqbaDDTe
2/VOL6I+w3gM9DYxoLZWIqU7lODdrw4Z4arkMPvdHVaxsVADDYyCzBCsEYvRwpI0
153xOh8Liti4od90Bh5LSOK3rd2LULlGMb24ZsWw1ryQEnLjFOIc/so7+Kk3Nmf8
tPggiKJqT5Qtv2ondQIDAQAB
-----END PUBLIC KEY-----
";

// A TEST-ONLY P-384 key pair for ES384 (no such key in envoy/test-keys).
const ES384_PRIVATE_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIG2AgEAMBAGByqGSM49AgEGBSuBBAAiBIGeMIGbAgEBBDCFOV2zCCXyyFeWiIjL
kiX35yWc3FyAG8+QHtSeawLrOhUJaf3Kh70jQFo2cMz15KyhZANiAAQeoZdFBW8D
klq6/VxvLaLD3qG8OkZoLlRKrTveyOs2z2Jy2Sneay1xjOJdQruNIZeoi9HzDSXk
Vj6wGvE/KkoSCVQoG0wNINQfb4MmT+aZqR68Eh822+p5SGmb3LVrQsM=
-----END PRIVATE KEY-----
";

const ES384_PUBLIC_PEM: &str = "-----BEGIN PUBLIC KEY-----
MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAEHqGXRQVvA5Jauv1cby2iw96hvDpGaC5U
Sq073sjrNs9ictkp3mstcYziXUK7jSGXqIvR8w0l5FY+sBrxPypKEglUKBtMDSDU
H2+DJk/mmakevBIfNtvqeUhpm9y1a0LD
-----END PUBLIC KEY-----
";

// A TEST-ONLY P-521 public key: a curve Palisade does not verify.
const P521_PUBLIC_PEM: &str = "-----BEGIN PUBLIC KEY-----
MIGbMBAGByqGSM49AgEGBSuBBAAjA4GGAAQBVKOp9bHlwJRsrulE91kxfutTXLsi
xMx1zvJIqSdCajeoAmj6ZLnjraedq65uKEsiv6dc4sVN8qmYIdRNPaeQs4kAgH07
60YoHO9uHL9CHDq6IjGtBPbm321T3/bOWMlO+/ASaAMR5LGysuh3Kxq2+IGVHIIi
VQr3LkeohoaOINS+B8E=
-----END PUBLIC KEY-----
";

/// The guest token of OPA's Envoy primer: HS256 under `secret`, with
/// `nbf` 1514851139 and `exp` 1641081539.
const PRIMER_GUEST_TOKEN: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJyb2xlIjoiZ3Vlc3QiLCJzdWIiOiJZV3hwWTJVPSIsIm5iZiI6MTUxNDg1MTEzOSwiZXhwIjoxNjQxMDgxNTM5fQ.K5DnnbbIOspRbpCr2IKXE9cPVatGOCBrBQobQmBmaeU";

const NOW_NS: u64 = NOW_SECS * 1_000_000_000;

fn unverified() -> Json {
    json!([false, {}, {}])
}

fn hmac(alg: Alg, secret: &str) -> SigningKey {
    SigningKey::from_secret(alg, None, secret.as_bytes()).unwrap()
}

fn es384() -> SigningKey {
    SigningKey::from_pem(Alg::ES384, None, ES384_PRIVATE_PEM.as_bytes()).unwrap()
}

/// An RSA key of the test issuer that signs `alg` (RS*/PS*), without a `kid`.
fn rsa(alg: Alg) -> SigningKey {
    SigningKey::from_pem(
        alg,
        None,
        include_bytes!("../../../../envoy/test-keys/rs256.key.pem"),
    )
    .unwrap()
}

fn weak_rsa() -> SigningKey {
    SigningKey::from_pem(
        Alg::RS256,
        None,
        include_bytes!("../../../../envoy/test-keys/weak-rsa1024.key.pem"),
    )
    .unwrap()
}

/// `key` signs `claims` under the header `header` (raw JSON text).
fn signed(key: &SigningKey, header: &str, claims: &Json) -> String {
    key.sign_raw(header, &claims.to_string()).unwrap()
}

/// Evaluates `result := <expr>` at [`NOW`] with `input`.
fn rego_at(expr: &str, input: Json, now: Option<Duration>) -> Result<Json, String> {
    let module = format!("package t\nresult := {expr}\n");
    let modules = BTreeMap::from([("t.rego".to_owned(), module)]);
    let policy = Policy::compile(&modules, None, "data.t.result").map_err(|e| e.message)?;
    let input = regorus::Value::from(input);
    let value = match now {
        Some(now) => policy.evaluate_at(input, now)?,
        None => policy.evaluate(input)?,
    };
    Ok(serde_json::to_value(&value).unwrap())
}

fn rego(expr: &str, input: Json) -> Result<Json, String> {
    rego_at(expr, input, Some(NOW))
}

/// `io.jwt.decode_verify(token, constraints)` in Rego, at [`NOW`].
fn decode_verify_rego(token: &str, constraints: Json) -> Json {
    rego(
        "io.jwt.decode_verify(input.token, input.constraints)",
        json!({"token": token, "constraints": constraints}),
    )
    .unwrap_or_else(|e| panic!("decode_verify errored: {e}"))
}

/// Why `decode_verify` refuses `token` (or what it returns), at [`NOW`].
fn check(token: &str, constraints: Json) -> Result<(Json, Json), TokenError> {
    let clock = EvalClock::default();
    clock.set(NOW);
    let c = Constraints::parse(
        &regorus::Value::from(constraints),
        &clock,
        &KeyCache::default(),
    )
    .unwrap();
    constraints::decode_verify(token, &c).map(|(h, p)| (Json::Object(h), Json::Object(p)))
}

fn refusal(token: &str, constraints: Json) -> TokenError {
    check(token, constraints)
        .err()
        .unwrap_or_else(|| panic!("token verified but must not: {token}"))
}

/// `io.jwt.<function>(token, key)` in Rego.
fn verify_rego(function: &str, token: &str, key: &str) -> Result<Json, String> {
    rego(
        &format!("io.jwt.{function}(input.token, input.key)"),
        json!({"token": token, "key": key}),
    )
}

/// The constraints every happy-path token here meets.
fn with_claims(mut constraints: Json) -> Json {
    constraints["iss"] = json!(ISSUER);
    constraints["aud"] = json!(AUDIENCE);
    constraints
}

#[test]
fn hs256_with_a_short_secret_verifies_as_in_opa() {
    let token = hmac(Alg::HS256, "secret")
        .mint(&testutil::claims())
        .unwrap();
    let result = decode_verify_rego(&token, with_claims(json!({"secret": "secret"})));
    assert_eq!(
        result,
        json!([true, {"alg": "HS256", "typ": "JWT"}, testutil::claims()])
    );
    let wrong = decode_verify_rego(&token, with_claims(json!({"secret": "secreT"})));
    assert_eq!(wrong, unverified());
}

#[test]
fn rs256_verifies_with_a_jwks_string() {
    let token = rs256().mint(&testutil::claims()).unwrap();
    let result = decode_verify_rego(&token, with_claims(json!({"cert": JWKS})));
    assert_eq!(
        result,
        json!([true, {"alg": "RS256", "typ": "JWT", "kid": "test-rs256"}, testutil::claims()])
    );
    // A single JWK is a `cert` too, as in OPA.
    let jwk = serde_json::from_str::<Json>(JWKS).unwrap()["keys"][0].to_string();
    assert_eq!(
        decode_verify_rego(&token, with_claims(json!({"cert": jwk})))[0],
        true
    );
}

#[test]
fn rs256_verifies_with_a_pem_public_key_and_a_certificate() {
    // No `kid`: PEM keys have none.
    let token = signed(&rsa(Alg::RS256), r#"{"alg":"RS256"}"#, &testutil::claims());
    for pem in [RS256_PUBLIC_PEM, RS256_CERT_PEM] {
        let result = decode_verify_rego(&token, with_claims(json!({"cert": pem})));
        assert_eq!(
            result,
            json!([true, {"alg": "RS256"}, testutil::claims()]),
            "{pem}"
        );
    }
    let other = signed(
        &testutil::attacker(),
        r#"{"alg":"RS256"}"#,
        &testutil::claims(),
    );
    assert_eq!(
        decode_verify_rego(&other, with_claims(json!({"cert": RS256_CERT_PEM}))),
        unverified()
    );
}

#[test]
fn es256_and_eddsa_verify_with_a_jwks_and_with_pem() {
    for (key, pems) in [
        (es256(), vec![ES256_PUBLIC_PEM, ES256_CERT_PEM]),
        (eddsa(), vec![EDDSA_PUBLIC_PEM]),
    ] {
        let token = key.mint(&testutil::claims()).unwrap();
        for cert in pems.into_iter().chain([JWKS]) {
            let result = decode_verify_rego(&token, with_claims(json!({"cert": cert})));
            assert_eq!(result[0], true, "{} with {cert}", key.alg);
            assert_eq!(result[2], testutil::claims());
        }
        assert_eq!(
            decode_verify_rego(&token, with_claims(json!({"cert": RS256_PUBLIC_PEM}))),
            unverified(),
            "{} with an RSA key",
            key.alg
        );
    }
}

#[test]
fn alg_none_never_verifies() {
    let claims = testutil::claims().to_string();
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = json!({"alg": alg, "typ": "JWT"}).to_string();
        let token = unsigned(&header, &claims);
        for constraints in [
            json!({"secret": "secret"}),
            json!({"cert": JWKS}),
            json!({"secret": "secret", "alg": alg}),
        ] {
            let constraints = with_claims(constraints);
            assert_eq!(
                decode_verify_rego(&token, constraints.clone()),
                unverified()
            );
            assert_eq!(refusal(&token, constraints), TokenError::AlgNotAllowed);
        }
        assert_eq!(
            verify_rego("verify_hs256", &token, "secret"),
            Ok(json!(false))
        );
        assert_eq!(verify_rego("verify_rs256", &token, JWKS), Ok(json!(false)));
    }
}

#[test]
fn key_confusion_is_refused() {
    // The classic attack: an HS256 MAC whose secret is the RSA public key,
    // sent to a verifier that was given that public key.
    for public in [RS256_PUBLIC_PEM, RS256_CERT_PEM] {
        let token = hmac(Alg::HS256, public).mint(&testutil::claims()).unwrap();
        let constraints = with_claims(json!({"cert": public}));
        assert_eq!(
            decode_verify_rego(&token, constraints.clone()),
            unverified()
        );
        assert_eq!(refusal(&token, constraints), TokenError::BadSignature);
        assert_eq!(
            verify_rego("verify_rs256", &token, public),
            Ok(json!(false))
        );
        // Positive control: the MAC itself is sound.
        assert_eq!(verify_rego("verify_hs256", &token, public), Ok(json!(true)));
    }
    // The same with the JWKS text as the secret.
    let token = hmac(Alg::HS256, JWKS).mint(&testutil::claims()).unwrap();
    assert_eq!(
        decode_verify_rego(&token, with_claims(json!({"cert": JWKS}))),
        unverified()
    );
}

#[test]
fn expired_and_not_yet_valid_tokens_are_invalid() {
    let key = hmac(Alg::HS256, "secret");
    let secret = with_claims(json!({"secret": "secret"}));
    let at = |changes: Json| key.mint(&testutil::claims_with(changes)).unwrap();

    let expired = at(json!({"exp": NOW_SECS - 1}));
    assert_eq!(decode_verify_rego(&expired, secret.clone()), unverified());
    assert_eq!(refusal(&expired, secret.clone()), TokenError::Expired);
    // `exp` is the first instant the token is invalid.
    let expiring = at(json!({"exp": NOW_SECS}));
    assert_eq!(refusal(&expiring, secret.clone()), TokenError::Expired);
    assert!(check(&at(json!({"exp": NOW_SECS + 1})), secret.clone()).is_ok());

    let early = at(json!({"nbf": NOW_SECS + 1}));
    assert_eq!(decode_verify_rego(&early, secret.clone()), unverified());
    assert_eq!(refusal(&early, secret.clone()), TokenError::NotYetValid);
    assert!(check(&at(json!({"nbf": NOW_SECS})), secret.clone()).is_ok());

    // OPA requires neither claim.
    let timeless = at(json!({"exp": null, "iat": null}));
    assert_eq!(decode_verify_rego(&timeless, secret.clone())[0], true);
    // A non-numeric `exp` is no `exp` to trust.
    let odd = at(json!({"exp": "tomorrow"}));
    assert_eq!(decode_verify_rego(&odd, secret), unverified());
}

#[test]
fn the_time_constraint_replaces_the_clock() {
    let key = hmac(Alg::HS256, "secret");
    let expired = key
        .mint(&testutil::claims_with(json!({"exp": NOW_SECS - 60})))
        .unwrap();
    let then = with_claims(json!({"secret": "secret", "time": (NOW_SECS - 61) * 1_000_000_000}));
    assert_eq!(decode_verify_rego(&expired, then.clone())[0], true);
    let later = with_claims(json!({"secret": "secret", "time": NOW_NS}));
    assert_eq!(decode_verify_rego(&expired, later), unverified());
    // With a `time`, no clock is needed.
    let result = rego_at(
        "io.jwt.decode_verify(input.token, input.constraints)",
        json!({"token": expired, "constraints": then}),
        None,
    );
    assert_eq!(result.unwrap()[0], true);
}

#[test]
fn without_time_or_clock_decode_verify_is_an_error() {
    let token = hmac(Alg::HS256, "secret")
        .mint(&testutil::claims())
        .unwrap();
    let err = rego_at(
        "io.jwt.decode_verify(input.token, input.constraints)",
        json!({"token": token, "constraints": with_claims(json!({"secret": "secret"}))}),
        None,
    )
    .unwrap_err();
    assert!(err.contains("no clock"), "{err}");
}

#[test]
fn time_now_ns_returns_the_injected_clock_and_errors_without_one() {
    assert_eq!(rego("time.now_ns()", json!({})), Ok(json!(NOW_NS)));
    let later = Duration::from_secs(NOW_SECS + 5);
    assert_eq!(
        rego_at("time.now_ns()", json!({}), Some(later)),
        Ok(json!(NOW_NS + 5_000_000_000))
    );
    let err = rego_at("time.now_ns()", json!({}), None).unwrap_err();
    assert!(err.contains("no clock"), "{err}");
}

#[test]
fn the_wrong_issuer_is_invalid() {
    let key = hmac(Alg::HS256, "secret");
    let token = key.mint(&testutil::claims()).unwrap();
    let wrong = json!({"secret": "secret", "aud": AUDIENCE, "iss": "https://evil.test"});
    assert_eq!(decode_verify_rego(&token, wrong.clone()), unverified());
    assert_eq!(refusal(&token, wrong), TokenError::BadIssuer);
    let no_iss = key
        .mint(&testutil::claims_with(json!({"iss": null})))
        .unwrap();
    let constraints = with_claims(json!({"secret": "secret"}));
    assert_eq!(refusal(&no_iss, constraints), TokenError::BadIssuer);
    // Without an `iss` constraint, any issuer passes (OPA).
    let any = json!({"secret": "secret", "aud": AUDIENCE});
    assert_eq!(decode_verify_rego(&token, any)[0], true);
}

#[test]
fn audience_rules_follow_opa() {
    let key = hmac(Alg::HS256, "secret");
    let token = key.mint(&testutil::claims()).unwrap();
    let secret = json!({"secret": "secret", "iss": ISSUER});

    // The token names an audience, the constraints none: invalid.
    assert_eq!(decode_verify_rego(&token, secret.clone()), unverified());
    assert_eq!(refusal(&token, secret.clone()), TokenError::BadAudience);
    let other = json!({"secret": "secret", "iss": ISSUER, "aud": "billing-api"});
    assert_eq!(decode_verify_rego(&token, other.clone()), unverified());
    assert_eq!(refusal(&token, other), TokenError::BadAudience);

    let many = key
        .mint(&testutil::claims_with(
            json!({"aud": ["billing-api", AUDIENCE]}),
        ))
        .unwrap();
    assert_eq!(
        decode_verify_rego(&many, with_claims(secret.clone()))[0],
        true
    );

    let none = key
        .mint(&testutil::claims_with(json!({"aud": null})))
        .unwrap();
    assert_eq!(
        refusal(&none, with_claims(secret.clone())),
        TokenError::BadAudience
    );
    assert_eq!(decode_verify_rego(&none, secret)[0], true);
}

#[test]
fn a_crit_header_is_invalid() {
    let key = hmac(Alg::HS256, "secret");
    let claims = testutil::claims();
    let constraints = with_claims(json!({"secret": "secret"}));
    let crit = signed(&key, r#"{"alg":"HS256","crit":["exp"],"exp":1}"#, &claims);
    assert_eq!(decode_verify_rego(&crit, constraints.clone()), unverified());
    assert_eq!(refusal(&crit, constraints.clone()), TokenError::Crit);
    assert_eq!(
        verify_rego("verify_hs256", &crit, "secret"),
        Ok(json!(false))
    );
    let plain = signed(&key, r#"{"alg":"HS256","exp":1}"#, &claims);
    assert_eq!(decode_verify_rego(&plain, constraints)[0], true);
    assert_eq!(
        verify_rego("verify_hs256", &plain, "secret"),
        Ok(json!(true))
    );
}

#[test]
fn duplicate_member_names_are_invalid() {
    let key = hmac(Alg::HS256, "secret");
    let constraints = with_claims(json!({"secret": "secret"}));
    let exp = NOW_SECS + 600;
    let payload =
        |sub: &str| format!(r#"{{"iss":"{ISSUER}","aud":"{AUDIENCE}",{sub}"exp":{exp}}}"#);
    let twice = key
        .sign_raw(
            r#"{"alg":"HS256"}"#,
            &payload(r#""sub":"alice","sub":"admin","#),
        )
        .unwrap();
    assert_eq!(
        decode_verify_rego(&twice, constraints.clone()),
        unverified()
    );
    assert_eq!(
        refusal(&twice, constraints.clone()),
        TokenError::DuplicateName
    );
    assert_eq!(
        verify_rego("verify_hs256", &twice, "secret"),
        Ok(json!(false))
    );
    let header_twice = key
        .sign_raw(r#"{"alg":"HS256","alg":"HS256"}"#, &payload(""))
        .unwrap();
    assert_eq!(
        refusal(&header_twice, constraints.clone()),
        TokenError::DuplicateName
    );
    let once = key
        .sign_raw(r#"{"alg":"HS256"}"#, &payload(r#""sub":"alice","#))
        .unwrap();
    assert_eq!(decode_verify_rego(&once, constraints)[0], true);
    assert_eq!(
        verify_rego("verify_hs256", &once, "secret"),
        Ok(json!(true))
    );
}

#[test]
fn the_alg_constraint_must_match_the_token() {
    let token = rs256().mint(&testutil::claims()).unwrap();
    let wrong = with_claims(json!({"cert": JWKS, "alg": "RS384"}));
    assert_eq!(decode_verify_rego(&token, wrong.clone()), unverified());
    assert_eq!(refusal(&token, wrong), TokenError::AlgNotAllowed);
    let right = with_claims(json!({"cert": JWKS, "alg": "RS256"}));
    assert_eq!(decode_verify_rego(&token, right)[0], true);
}

#[test]
fn a_jwks_key_verifies_only_its_own_alg() {
    // The JWKS declares `alg: RS256` for its RSA key; the PEM key declares
    // nothing, so any RSA algorithm fits it.
    let ps256 = rsa(Alg::PS256);
    let header = r#"{"alg":"PS256","kid":"test-rs256"}"#;
    let token = signed(&ps256, header, &testutil::claims());
    assert_eq!(
        refusal(&token, with_claims(json!({"cert": JWKS}))),
        TokenError::BadSignature
    );
    let result = decode_verify_rego(&token, with_claims(json!({"cert": RS256_PUBLIC_PEM})));
    assert_eq!(result[0], true);
}

#[test]
fn kid_picks_the_key_and_an_unknown_kid_falls_back_to_all_keys() {
    let claims = testutil::claims();
    let constraints = with_claims(json!({"cert": JWKS}));
    // An attacker's key that claims the issuer's kid.
    let forged = testutil::attacker().mint(&claims).unwrap();
    assert_eq!(
        refusal(&forged, constraints.clone()),
        TokenError::BadSignature
    );
    // As in OPA, a kid the set lacks means "try every key".
    let renamed = signed(&rs256(), r#"{"alg":"RS256","kid":"rotated"}"#, &claims);
    assert_eq!(decode_verify_rego(&renamed, constraints)[0], true);

    // A set that trusts both keys, the attacker's under its own kid: a
    // token the attacker's key signed but naming the issuer's kid is
    // checked against the issuer's key only, and refused.
    let mut both: Json =
        serde_json::from_str(include_str!("../../../../envoy/test-keys/jwks.json")).unwrap();
    let mut theirs: Json = serde_json::from_str(include_str!(
        "../../../../envoy/test-keys/attacker.jwks.json"
    ))
    .unwrap();
    theirs["keys"][0]["kid"] = json!("attacker");
    both["keys"]
        .as_array_mut()
        .unwrap()
        .push(theirs["keys"][0].clone());
    let constraints = with_claims(json!({"cert": both.to_string()}));
    assert_eq!(
        refusal(&forged, constraints.clone()),
        TokenError::BadSignature
    );
    // Control: under its own kid, the attacker's key verifies in this set.
    let own = signed(
        &testutil::attacker(),
        r#"{"alg":"RS256","kid":"attacker"}"#,
        &claims,
    );
    assert_eq!(decode_verify_rego(&own, constraints)[0], true);
}

#[test]
fn weak_and_unsupported_keys_verify_nothing() {
    let token = weak_rsa().mint(&testutil::claims()).unwrap();
    // Positive control: the signature is sound under the weak key.
    let weak = jsonwebtoken::DecodingKey::from_rsa_pem(WEAK_RSA1024_PUBLIC_PEM.as_bytes()).unwrap();
    let (signing_input, signature) = token.rsplit_once('.').unwrap();
    assert!(jsonwebtoken::crypto::verify(
        signature,
        signing_input.as_bytes(),
        &weak,
        jsonwebtoken::Algorithm::RS256
    )
    .unwrap());
    for cert in [WEAK_RSA1024_PUBLIC_PEM, testutil::WEAK_JWKS] {
        assert!(keys::parse_cert(cert).unwrap().is_empty(), "{cert}");
        let constraints = with_claims(json!({"cert": cert}));
        assert_eq!(decode_verify_rego(&token, constraints), unverified());
        assert_eq!(verify_rego("verify_rs256", &token, cert), Ok(json!(false)));
    }
    // A well-formed key on a curve Palisade does not verify: not an error.
    assert!(keys::parse_cert(P521_PUBLIC_PEM).unwrap().is_empty());
    let es = es256().mint(&testutil::claims()).unwrap();
    assert_eq!(
        verify_rego("verify_es256", &es, P521_PUBLIC_PEM),
        Ok(json!(false))
    );
}

#[test]
fn oversized_jwe_and_json_serialized_tokens_are_invalid() {
    let key = hmac(Alg::HS256, "secret");
    let constraints = with_claims(json!({"secret": "secret"}));
    let padding = "x".repeat(crate::token::verify::MAX_TOKEN_BYTES);
    let big = key
        .mint(&testutil::claims_with(json!({"pad": padding})))
        .unwrap();
    assert_eq!(decode_verify_rego(&big, constraints.clone()), unverified());
    assert_eq!(refusal(&big, constraints.clone()), TokenError::TooLarge);
    assert_eq!(
        verify_rego("verify_hs256", &big, "secret"),
        Ok(json!(false))
    );
    let small = key
        .mint(&testutil::claims_with(json!({"pad": "x"})))
        .unwrap();
    assert_eq!(decode_verify_rego(&small, constraints.clone())[0], true);

    let jwe = "eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.a.b.c.d";
    assert_eq!(refusal(jwe, constraints.clone()), TokenError::Unsupported);
    // A JWE-style header in a token of three parts.
    let enc = signed(
        &key,
        r#"{"alg":"HS256","enc":"A256GCM"}"#,
        &testutil::claims(),
    );
    assert_eq!(refusal(&enc, constraints.clone()), TokenError::Unsupported);
    let json_serialized = r#"{"payload":"e30","signatures":[]}"#;
    assert_eq!(
        refusal(json_serialized, constraints.clone()),
        TokenError::Unsupported
    );
    for token in [jwe, enc.as_str(), json_serialized, "not a token", ""] {
        assert_eq!(decode_verify_rego(token, constraints.clone()), unverified());
    }
}

#[test]
fn nested_tokens_are_verified_at_every_level() {
    let key = hmac(Alg::HS256, "secret");
    let constraints = with_claims(json!({"secret": "secret"}));
    let inner = key.mint(&testutil::claims()).unwrap();
    let envelope = |inner: &str| {
        let header = r#"{"alg":"HS256","cty":"JWT"}"#;
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(inner)
        );
        let mac = jsonwebtoken::crypto::sign(
            signing_input.as_bytes(),
            &jsonwebtoken::EncodingKey::from_secret(b"secret").unwrap(),
            jsonwebtoken::Algorithm::HS256,
        )
        .unwrap();
        format!("{signing_input}.{mac}")
    };
    let result = decode_verify_rego(&envelope(&inner), constraints.clone());
    assert_eq!(
        result,
        json!([true, {"alg": "HS256", "typ": "JWT"}, testutil::claims()])
    );
    let decoded = rego(
        "io.jwt.decode(input.token)",
        json!({"token": envelope(&inner)}),
    );
    assert_eq!(decoded.unwrap()[1], testutil::claims());
    // The envelope verifies, the inner token does not.
    let forged_inner = hmac(Alg::HS256, "other").mint(&testutil::claims()).unwrap();
    let forged = envelope(&forged_inner);
    assert_eq!(refusal(&forged, constraints), TokenError::BadSignature);
}

#[test]
fn decode_returns_header_payload_and_the_signature_in_hex() {
    let result = rego(
        "io.jwt.decode(input.token)",
        json!({"token": PRIMER_GUEST_TOKEN}),
    );
    assert_eq!(
        result,
        Ok(json!([
            {"alg": "HS256", "typ": "JWT"},
            {"role": "guest", "sub": "YWxpY2U=", "nbf": 1514851139, "exp": 1641081539},
            "2b90e79db6c83aca516e90abd8829713d70f55ab4638206b050a1b42606669e5"
        ]))
    );
    // decode verifies nothing: a token with `crit` and no signature decodes.
    let header = r#"{"alg":"none","crit":["x"],"x":1}"#;
    let token = unsigned(header, r#"{"sub":"alice"}"#);
    let result = rego("io.jwt.decode(input.token)", json!({"token": token}));
    assert_eq!(
        result,
        Ok(json!([{"alg": "none", "crit": ["x"], "x": 1}, {"sub": "alice"}, ""]))
    );
}

#[test]
fn decode_is_undefined_for_malformed_tokens() {
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256"}"#);
    let payload = URL_SAFE_NO_PAD.encode(r#"{"sub":"alice"}"#);
    let not_json = URL_SAFE_NO_PAD.encode("sub=alice");
    let twice = URL_SAFE_NO_PAD.encode(r#"{"sub":"alice","sub":"admin"}"#);
    let jwe_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","enc":"A256GCM"}"#);
    let huge = URL_SAFE_NO_PAD.encode("x".repeat(crate::token::verify::MAX_TOKEN_BYTES));
    let cases = [
        ("no dots", "abc".to_owned()),
        ("two parts", format!("{header}.{payload}")),
        ("JWE compact", format!("{header}.{payload}.a.b.c")),
        (
            "JSON serialization",
            r#"{"payload":"e30","signatures":[]}"#.to_owned(),
        ),
        ("payload not JSON", format!("{header}.{not_json}.")),
        ("header not base64url", format!("%%%.{payload}.")),
        ("signature not base64url", format!("{header}.{payload}.%%")),
        ("duplicate claims", format!("{header}.{twice}.")),
        ("JWE header", format!("{jwe_header}.{payload}.")),
        ("too large", format!("{header}.{huge}.")),
    ];
    // Undefined, not an error: the rest of the policy still decides (a
    // public path stays public when a caller sends garbage).
    let decoded = "[d | d := io.jwt.decode(input.token)]";
    for (what, token) in cases {
        let result = rego(decoded, json!({"token": token}));
        assert_eq!(result, Ok(json!([])), "{what}");
    }
    let good = format!("{header}.{payload}.");
    let result = rego(decoded, json!({"token": good})).unwrap();
    assert_eq!(result[0][1], json!({"sub": "alice"}));
    // A non-string operand is still an error.
    let err = rego("io.jwt.decode(input.token)", json!({"token": 7})).unwrap_err();
    assert!(err.contains("operand 1 must be a string"), "{err}");
}

#[test]
fn bad_constraints_are_errors_as_in_opa() {
    let token = hmac(Alg::HS256, "secret")
        .mint(&testutil::claims())
        .unwrap();
    let cases = [
        (
            json!({"secret": "secret", "audience": AUDIENCE}),
            "unknown token validation constraint",
        ),
        (
            json!({"secret": "secret", "cert": JWKS}),
            "duplicate key constraints",
        ),
        (json!({"iss": ISSUER}), "no key constraint"),
        (json!({"secret": ""}), "no key constraint"),
        (json!({"secret": 42}), "must be a string"),
        (
            json!({"secret": "secret", "time": -1}),
            "must not be negative",
        ),
        (
            json!({"secret": "secret", "time": "now"}),
            "must be a number",
        ),
        (
            json!({"cert": "not a certificate"}),
            "neither a PEM block nor a JWK",
        ),
        (json!({"cert": "{\"keys\": 1}"}), "`keys` must be an array"),
        (
            json!({"cert": format!("{RS256_PUBLIC_PEM}junk")}),
            "extra data",
        ),
        (
            json!({"cert": format!("{RS256_PUBLIC_PEM}{ES256_PUBLIC_PEM}")}),
            "extra data",
        ),
        (
            json!({"cert": ES384_PRIVATE_PEM}),
            "`PRIVATE KEY` block is not supported",
        ),
    ];
    for (constraints, expected) in cases {
        let result = rego(
            "io.jwt.decode_verify(input.token, input.constraints)",
            json!({"token": token, "constraints": constraints}),
        );
        let err = result.expect_err(&constraints.to_string());
        assert!(err.contains(expected), "{constraints}: {err}");
    }
    // A well-formed key argument that is malformed is an error for verify_* too.
    let err = verify_rego("verify_rs256", &token, "not a certificate").unwrap_err();
    assert!(err.contains("io.jwt.verify_rs256"), "{err}");
    let err = verify_rego("verify_hs256", &token, "").unwrap_err();
    assert!(err.contains("must not be empty"), "{err}");
}

#[test]
fn every_verify_builtin_answers_a_boolean() {
    let claims = testutil::claims();
    for (name, alg) in VERIFIERS {
        let function = name.trim_start_matches("io.jwt.");
        let (signer, key, wrong_key): (SigningKey, &str, &str) = match alg {
            _ if alg.is_hmac() => (hmac(alg, "secret"), "secret", "other"),
            _ if alg.is_rsa() => (rsa(alg), RS256_CERT_PEM, WEAK_RSA1024_PUBLIC_PEM),
            Alg::ES256 => (es256(), ES256_PUBLIC_PEM, ES384_PUBLIC_PEM),
            Alg::ES384 => (es384(), ES384_PUBLIC_PEM, ES256_PUBLIC_PEM),
            _ => (eddsa(), EDDSA_PUBLIC_PEM, RS256_PUBLIC_PEM),
        };
        let token = signer.mint(&claims).unwrap();
        assert_eq!(
            verify_rego(function, &token, key),
            Ok(json!(true)),
            "{name}"
        );
        assert_eq!(
            verify_rego(function, &token, wrong_key),
            Ok(json!(false)),
            "{name} with the wrong key"
        );
        // A changed claim breaks the signature.
        let (_, payload, signature) = {
            let mut parts = token.splitn(3, '.');
            (parts.next(), parts.next().unwrap(), parts.next().unwrap())
        };
        let header =
            URL_SAFE_NO_PAD.encode(json!({"alg": alg.name(), "typ": "JWT", "x": 1}).to_string());
        let tampered = format!("{header}.{payload}.{signature}");
        assert_eq!(
            verify_rego(function, &tampered, key),
            Ok(json!(false)),
            "{name}"
        );
        // The header must name the builtin's algorithm.
        let other = if alg == Alg::HS256 {
            Alg::HS384
        } else {
            Alg::HS256
        };
        // Signed correctly for this builtin, but the header names
        // another algorithm: only the header check refuses it.
        let header = json!({"alg": other.name(), "typ": "JWT"}).to_string();
        let mismatched = signer.sign_raw(&header, &claims.to_string()).unwrap();
        assert_eq!(
            verify_rego(function, &mismatched, key),
            Ok(json!(false)),
            "{name}"
        );
    }
}

#[test]
fn names_are_exactly_the_registered_functions() {
    let mut expected: Vec<&str> = VERIFIERS.iter().map(|(name, _)| *name).collect();
    expected.extend(["io.jwt.decode", "io.jwt.decode_verify", "time.now_ns"]);
    expected.sort_unstable();
    let mut names = NAMES.to_vec();
    names.sort_unstable();
    assert_eq!(names, expected);
    // Each resolves at load time, and ES512 (unsupported) does not.
    for name in NAMES {
        let call = match name {
            "time.now_ns" => format!("{name}()"),
            "io.jwt.decode" => format!("{name}(input.t)"),
            _ => format!("{name}(input.t, input.k)"),
        };
        let module = BTreeMap::from([("t.rego".to_owned(), format!("package t\nx := {call}\n"))]);
        assert!(Policy::compile(&module, None, "data.t.x").is_ok(), "{name}");
    }
    let module = BTreeMap::from([(
        "t.rego".to_owned(),
        "package t\nx := io.jwt.verify_es512(input.t, input.k)\n".to_owned(),
    )]);
    let err = Policy::compile(&module, None, "data.t.x").unwrap_err();
    assert!(
        err.message.contains("io.jwt.verify_es512"),
        "{}",
        err.message
    );
}

#[test]
fn the_cert_cache_reuses_parsed_keys_and_stays_bounded() {
    let cache = KeyCache::default();
    let first = cache.keys(JWKS).unwrap();
    let again = cache.keys(JWKS).unwrap();
    assert!(Arc::ptr_eq(&first, &again));
    assert_eq!(first.len(), 3);
    assert_eq!(cache.len(), 1);
    for i in 0..40 {
        // The same key set, spelt differently each time.
        let cert = format!("{JWKS}{}", " ".repeat(i + 1));
        cache.keys(&cert).unwrap();
    }
    assert_eq!(cache.len(), 16);
    // JWKS itself was evicted: a new parse, a new allocation.
    assert!(!Arc::ptr_eq(&first, &cache.keys(JWKS).unwrap()));
    assert!(cache.keys("garbage").is_err());
    assert_eq!(cache.len(), 16);
}

/// OPA's Envoy primer policy, verbatim (Rego v0).
const PRIMER_POLICY: &str = r#"package envoy.authz

import input.attributes.request.http as http_request

default allow = false

token = {"valid": valid, "payload": payload} {
    [_, encoded] := split(http_request.headers.authorization, " ")
    [valid, _, payload] := io.jwt.decode_verify(encoded, {"secret": "secret"})
}

allow {
    is_token_valid
    action_allowed
}

is_token_valid {
  token.valid
  now := time.now_ns() / 1000000000
  token.payload.nbf <= now
  now < token.payload.exp
}

action_allowed {
  http_request.method == "GET"
  token.payload.role == "guest"
  glob.match("/people*", [], http_request.path)
}

action_allowed {
  http_request.method == "GET"
  token.payload.role == "admin"
  glob.match("/people*", [], http_request.path)
}

action_allowed {
  http_request.method == "POST"
  token.payload.role == "admin"
  glob.match("/people", [], http_request.path)
  lower(input.parsed_body.firstname) != base64url.decode(token.payload.sub)
}
"#;

#[test]
fn opas_envoy_primer_policy_allows_and_denies() {
    let modules = BTreeMap::from([("policy.rego".to_owned(), PRIMER_POLICY.to_owned())]);
    let options = PolicyOptions {
        rego_version: RegoVersion::V0,
        ..Default::default()
    };
    let policy = Policy::compile_with(&modules, None, "data.envoy.authz.allow", options).unwrap();
    let request = |method: &str, path: &str, token: &str, firstname: &str| {
        regorus::Value::from(json!({
            "attributes": {"request": {"http": {
                "method": method,
                "path": path,
                "headers": {"authorization": format!("Bearer {token}")},
            }}},
            "parsed_body": {"firstname": firstname},
        }))
    };
    // Inside the primer token's lifetime (nbf 1514851139, exp 1641081539).
    let then = Duration::from_secs(1_600_000_000);
    let allow = |input, now| policy.evaluate_at(input, now).unwrap();
    let guest = PRIMER_GUEST_TOKEN;
    assert_eq!(
        allow(request("GET", "/people", guest, ""), then),
        true.into()
    );
    assert_eq!(
        allow(request("POST", "/people", guest, "Charlie"), then),
        false.into()
    );
    // After `exp`: decode_verify refuses it.
    assert_eq!(
        allow(request("GET", "/people", guest, ""), NOW),
        false.into()
    );
    // A forged signature.
    let (signed_part, _) = guest.rsplit_once('.').unwrap();
    let forged = format!("{signed_part}.{}", URL_SAFE_NO_PAD.encode([0u8; 32]));
    assert_eq!(
        allow(request("GET", "/people", &forged, ""), then),
        false.into()
    );

    let admin = hmac(Alg::HS256, "secret")
        .mint(&json!({"role": "admin", "sub": "Ym9i", "nbf": NOW_SECS - 10, "exp": NOW_SECS + 60}))
        .unwrap();
    assert_eq!(
        allow(request("POST", "/people", &admin, "Charlie"), NOW),
        true.into()
    );
    // bob may not create an employee named bob.
    assert_eq!(
        allow(request("POST", "/people", &admin, "Bob"), NOW),
        false.into()
    );
    // The same admin token under another secret.
    let other = hmac(Alg::HS256, "not-the-secret")
        .mint(&json!({"role": "admin", "sub": "Ym9i", "nbf": NOW_SECS - 10, "exp": NOW_SECS + 60}))
        .unwrap();
    assert_eq!(
        allow(request("POST", "/people", &other, "Charlie"), NOW),
        false.into()
    );
    // No clock: the evaluation fails, which the gate turns into a deny.
    let err = policy
        .evaluate(request("GET", "/people", guest, ""))
        .unwrap_err();
    assert!(err.contains("no clock"), "{err}");
}
