use super::*;
use crate::testutil::*;
use serde_json::json;

fn keys(jwks: &str) -> Vec<Value> {
    serde_json::from_str::<Value>(jwks).unwrap()["keys"]
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn loads_the_test_jwks() {
    let (keys, warnings) =
        load_keys(&keys(JWKS), &[Alg::RS256, Alg::ES256, Alg::EdDSA], "k").unwrap();
    assert_eq!(keys.len(), 3);
    assert!(warnings.is_empty());
    assert_eq!(keys[0].algorithms, vec![Alg::RS256]);
}

#[test]
fn rsa_under_2048_bits_is_refused() {
    let e = load_keys(&keys(WEAK_JWKS), &[Alg::RS256], "providers[0].jwks.keys").unwrap_err();
    assert!(
        e.starts_with("providers[0].jwks.keys[0]: RSA key has 1024 bits"),
        "{e}"
    );
}

#[test]
fn oct_key_without_hs_algorithm_is_refused() {
    let k = json!({"kty": "oct", "k": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI"});
    let e = load_keys(&[k], &[Alg::RS256], "k").unwrap_err();
    assert!(e.contains("no HS algorithm is allowed"), "{e}");
}

#[test]
fn short_hmac_secret_is_refused() {
    let k = json!({"kty": "oct", "k": "c2hvcnQ"});
    let e = load_keys(&[k], &[Alg::HS256], "k").unwrap_err();
    assert!(e.contains("HS256 needs at least 32"), "{e}");
}

#[test]
fn no_usable_key_is_refused() {
    // Only an EC key, but only RS256 allowed.
    let e = load_keys(&keys(JWKS)[1..2], &[Alg::RS256], "p.jwks.keys").unwrap_err();
    assert!(e.contains("no usable key"), "{e}");
    let e = load_keys(&[], &[Alg::RS256], "p.jwks.keys").unwrap_err();
    assert!(e.contains("no usable key"), "{e}");
}

#[test]
fn encryption_keys_are_skipped_with_a_warning() {
    let mut enc = keys(JWKS)[0].clone();
    enc["use"] = json!("enc");
    enc["kid"] = json!("enc-key");
    let mut all = keys(JWKS);
    all.push(enc);
    let (k, warnings) = load_keys(&all, &[Alg::RS256], "k").unwrap();
    assert_eq!(k.len(), 1);
    assert_eq!(warnings.len(), 3);
}

#[test]
fn private_key_material_is_refused() {
    let mut k = keys(JWKS)[0].clone();
    k["d"] = json!("AAAA");
    let e = load_keys(&[k], &[Alg::RS256], "k").unwrap_err();
    assert!(e.contains("private key member `d`"), "{e}");
}

#[test]
fn duplicate_kid_is_refused() {
    let k = keys(JWKS)[0].clone();
    let e = load_keys(&[k.clone(), k], &[Alg::RS256], "k").unwrap_err();
    assert!(e.contains("duplicate kid `test-rs256`"), "{e}");
}

#[test]
fn declared_alg_must_fit_the_key_type() {
    let mut k = keys(JWKS)[0].clone();
    k["alg"] = json!("ES256");
    let e = load_keys(&[k], &[Alg::RS256, Alg::ES256], "k").unwrap_err();
    assert!(e.contains("does not fit"), "{e}");
}

#[test]
fn declared_alg_narrows_what_the_key_verifies() {
    let (k, _) = load_keys(&keys(JWKS)[..1], &[Alg::RS256, Alg::PS256], "k").unwrap();
    assert_eq!(k[0].algorithms, vec![Alg::RS256]);
    let mut undeclared = keys(JWKS)[0].clone();
    undeclared.as_object_mut().unwrap().remove("alg");
    let (k, _) = load_keys(&[undeclared], &[Alg::RS256, Alg::PS256], "k").unwrap();
    assert_eq!(k[0].algorithms, vec![Alg::RS256, Alg::PS256]);
}

#[test]
fn unknown_members_are_ignored_per_rfc7517() {
    let mut k = keys(JWKS)[0].clone();
    k["issuer"] = json!("https://login.example/tenant");
    k["x5t"] = json!("abc");
    assert!(load_keys(&[k], &[Alg::RS256], "k").is_ok());
}

#[test]
fn unsupported_types_and_curves_are_refused() {
    for (k, msg) in [
        (json!({"kty": "RSA-X"}), "unsupported `kty`"),
        (
            json!({"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"}),
            "unsupported EC curve",
        ),
        (
            json!({"kty": "OKP", "crv": "X25519", "x": "AA"}),
            "unsupported OKP curve",
        ),
        (
            json!({"kty": "RSA", "n": 5, "e": "AQAB"}),
            "`n` must be a string",
        ),
        (json!({"kty": "RSA", "e": "AQAB"}), "missing `n`"),
        (json!("not an object"), "must be a JSON object"),
    ] {
        let e = load_keys(std::slice::from_ref(&k), &Alg::ALL, "k").unwrap_err();
        assert!(e.contains(msg), "{k}: {e}");
    }
}

#[test]
fn bit_length_counts_from_the_top_bit() {
    assert_eq!(bit_length(&[0x00, 0x80, 0x00]), 16);
    assert_eq!(bit_length(&[0x01]), 1);
    assert_eq!(bit_length(&[0, 0]), 0);
}

#[test]
fn keys_that_could_never_verify_fail_the_load() {
    // Even modulus.
    let mut rsa = keys(JWKS)[0].clone();
    let mut n = URL_SAFE_NO_PAD.decode(rsa["n"].as_str().unwrap()).unwrap();
    *n.last_mut().unwrap() &= 0xfe;
    rsa["n"] = json!(URL_SAFE_NO_PAD.encode(&n));
    let e = load_keys(&[rsa], &[Alg::RS256], "k").unwrap_err();
    assert!(e.contains("invalid RSA key"), "{e}");
    // Exponent 1.
    let mut rsa = keys(JWKS)[0].clone();
    rsa["e"] = json!("AQ");
    assert!(load_keys(&[rsa], &[Alg::RS256], "k")
        .unwrap_err()
        .contains("invalid RSA key"));
    // An EC point off the curve.
    let mut ec = keys(JWKS)[1].clone();
    ec["y"] = ec["x"].clone();
    let e = load_keys(&[ec], &[Alg::ES256], "k").unwrap_err();
    assert!(e.contains("invalid EC key"), "{e}");
}

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
