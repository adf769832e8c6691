use super::super::testkit::*;
use super::super::Signer;
use super::*;
use serde_json::json;

const OPA_SIGNATURES: &[u8] = include_bytes!("testdata/opa-hs256.signatures.json");

/// The files OPA's `TestReadWithSignaturesWithBaseDir` signs (under the
/// base directory `/foo/bar`).
fn opa_files() -> Vec<(&'static str, &'static [u8])> {
    vec![
        ("foo/bar/.manifest", br#"{"revision": "quickbrownfaux"}"#),
        ("foo/bar/a/b/c/data.json", b"[1,2,3]"),
        ("foo/bar/http/policy/policy.rego", b"package example"),
    ]
}

fn opa_verifier(key_id: Option<&str>, scope: &str) -> Verifier {
    Verifier::new_weak_hmac_for_tests(
        "HS256",
        "secret",
        key_id.map(str::to_owned),
        Some(scope.to_owned()),
    )
    .unwrap()
}

#[test]
fn verifies_a_signature_made_by_opa() {
    verify(OPA_SIGNATURES, &opa_files(), &opa_verifier(None, "write")).unwrap();
    verify(
        OPA_SIGNATURES,
        &opa_files(),
        &opa_verifier(Some("foo"), "write"),
    )
    .unwrap();
    // Whitespace in a structured file does not change its digest.
    let mut files = opa_files();
    files[0].1 = b"{\n  \"revision\":\"quickbrownfaux\"\n}\n";
    verify(OPA_SIGNATURES, &files, &opa_verifier(None, "write")).unwrap();
}

#[test]
fn the_opa_signature_fails_when_anything_differs() {
    let v = opa_verifier(None, "write");
    let mut tampered = opa_files();
    tampered[2].1 = b"package example2";
    assert!(verify(OPA_SIGNATURES, &tampered, &v)
        .unwrap_err()
        .contains("digest mismatch"));
    let mut tampered = opa_files();
    tampered[1].1 = b"[1,2,4]";
    assert!(verify(OPA_SIGNATURES, &tampered, &v)
        .unwrap_err()
        .contains("digest mismatch"));
    let mut extra = opa_files();
    extra.push(("foo/bar/x.rego", b"package x"));
    assert!(verify(OPA_SIGNATURES, &extra, &v)
        .unwrap_err()
        .contains("not listed"));
    let missing = &opa_files()[..2];
    let err = verify(OPA_SIGNATURES, missing, &v).unwrap_err();
    assert!(err.contains("foo/bar/http/policy/policy.rego"), "{err}");
    let err = verify(OPA_SIGNATURES, &opa_files(), &opa_verifier(None, "read")).unwrap_err();
    assert!(err.contains("scope mismatch"), "{err}");
    let err = verify(
        OPA_SIGNATURES,
        &opa_files(),
        &opa_verifier(Some("bar"), "write"),
    )
    .unwrap_err();
    assert!(err.contains("key id `foo`"), "{err}");
    let wrong_secret =
        Verifier::new_weak_hmac_for_tests("HS256", "secreT", None, Some("write".into())).unwrap();
    assert!(verify(OPA_SIGNATURES, &opa_files(), &wrong_secret)
        .unwrap_err()
        .contains("does not verify"));
}

fn signed_by(signer: &Signer, files: &[(&str, &[u8])]) -> Vec<u8> {
    signer.signatures(files).unwrap()
}

const FILES: [(&str, &[u8]); 2] = [("p.rego", b"package p"), ("data.json", b"{\"a\": 1}")];

#[test]
fn each_supported_algorithm_verifies() {
    for (signer, verifier) in [
        (rs256_signer(None, None), rs256_verifier(None, None)),
        (
            es256_signer(),
            Verifier::new("ES256", ES256_PUB, None, None).unwrap(),
        ),
        (
            eddsa_signer(),
            Verifier::new("EdDSA", EDDSA_PUB, None, None).unwrap(),
        ),
        (
            Signer::from_secret(Alg::HS256, &[7u8; 32], None, None).unwrap(),
            Verifier::new(
                "HS256",
                std::str::from_utf8(&[7u8; 32]).unwrap(),
                None,
                None,
            )
            .unwrap(),
        ),
    ] {
        verify(&signed_by(&signer, &FILES), &FILES, &verifier).unwrap();
    }
}

#[test]
fn a_different_key_is_refused() {
    let sigs = signed_by(&attacker_signer(), &FILES);
    let err = verify(&sigs, &FILES, &rs256_verifier(None, None)).unwrap_err();
    assert!(err.contains("does not verify"), "{err}");
}

/// A `.signatures.json` holding one JWS with this header and payload
/// text, signed by the RS256 test key (or unsigned for `alg: none`).
fn jws_file(header: &str, payload: &str) -> Vec<u8> {
    let token = rs256_signer(None, None).sign_raw(header, payload).unwrap();
    json!({ "signatures": [token] }).to_string().into_bytes()
}

fn files_payload() -> String {
    let sigs = signed_by(&rs256_signer(None, None), &FILES);
    let token = single_jws(&sigs).unwrap();
    let payload = token.split('.').nth(1).unwrap();
    String::from_utf8(URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

#[test]
fn alg_none_and_other_algorithms_are_refused() {
    let payload = files_payload();
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
        URL_SAFE_NO_PAD.encode(&payload)
    );
    let sigs = json!({ "signatures": [none] }).to_string();
    let err = verify(sigs.as_bytes(), &FILES, &rs256_verifier(None, None)).unwrap_err();
    assert!(err.contains("signed with `none`"), "{err}");
    // The header's alg never picks the algorithm: an HS256 MAC keyed with
    // the public key PEM (key confusion) is refused before any check.
    let confused = Signer::from_secret(Alg::HS256, RS256_PUB.as_bytes(), None, None).unwrap();
    let token = confused.sign_raw(r#"{"alg":"HS256"}"#, &payload).unwrap();
    let sigs = json!({ "signatures": [token] }).to_string();
    let err = verify(sigs.as_bytes(), &FILES, &rs256_verifier(None, None)).unwrap_err();
    assert!(err.contains("signed with `HS256`"), "{err}");
}

#[test]
fn jws_header_hardening() {
    let payload = files_payload();
    let v = rs256_verifier(None, None);
    let ok = jws_file(r#"{"alg":"RS256"}"#, &payload);
    verify(&ok, &FILES, &v).unwrap();
    for (header, why) in [
        (r#"{"alg":"RS256","crit":["exp"]}"#, "crit"),
        (r#"{"alg":"RS256","alg":"RS256"}"#, "duplicate"),
        (r#"{"alg":"RS256","kid":7}"#, "kid"),
        (r#"{"typ":"JWT"}"#, "alg"),
        (r#"["RS256"]"#, "object"),
    ] {
        let err = verify(&jws_file(header, &payload), &FILES, &v).unwrap_err();
        assert!(err.contains(why), "{header}: {err}");
    }
}

#[test]
fn jws_payload_hardening() {
    let v = rs256_verifier(None, None);
    let listed = json!([
        {"name": "p.rego", "hash": hex_of("p.rego", b"package p"), "algorithm": "SHA-256"},
        {"name": "data.json", "hash": hex_of("data.json", b"{\"a\": 1}"), "algorithm": "SHA-256"},
    ]);
    let payload = |extra: &str| format!(r#"{{"files":{listed}{extra}}}"#);
    verify(&jws_file(r#"{"alg":"RS256"}"#, &payload("")), &FILES, &v).unwrap();
    for (extra, why) in [
        (r#","scope":"write""#, "scope mismatch"),
        (r#","scope":1"#, "scope"),
        (r#","keyid":3"#, "keyid"),
        (r#","files":[]"#, "duplicate"),
    ] {
        let err = verify(&jws_file(r#"{"alg":"RS256"}"#, &payload(extra)), &FILES, &v).unwrap_err();
        assert!(err.contains(why), "{extra}: {err}");
    }
    for (files, why) in [
        (r#"{"files":{}}"#.to_owned(), "files"),
        (r#"{"files":[{"name":"p.rego"}]}"#.to_owned(), "name"),
        (
            format!(r#"{{"files":[{0},{0}]}}"#, listed[0]),
            "twice",
        ),
        (
            r#"{"files":[{"name":"p.rego","hash":"zz","algorithm":"SHA-256"},{"name":"data.json","hash":"00","algorithm":"SHA-256"}]}"#.to_owned(),
            "not hex",
        ),
        (
            format!(
                r#"{{"files":[{{"name":"p.rego","hash":"{}","algorithm":"MD5"}},{}]}}"#,
                hex_of("p.rego", b"package p"),
                listed[1]
            ),
            "MD5",
        ),
    ] {
        let err = verify(&jws_file(r#"{"alg":"RS256"}"#, &files), &FILES, &v).unwrap_err();
        assert!(err.contains(why), "{files}: {err}");
    }
}

fn hex_of(path: &str, bytes: &[u8]) -> String {
    file_digest(path, bytes, HashAlg::Sha256)
        .unwrap()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn key_id_and_scope_follow_the_configuration() {
    let sigs = signed_by(&rs256_signer(Some("release"), Some("prod")), &FILES);
    verify(
        &sigs,
        &FILES,
        &rs256_verifier(Some("release"), Some("prod")),
    )
    .unwrap();
    verify(&sigs, &FILES, &rs256_verifier(None, Some("prod"))).unwrap();
    let err = verify(&sigs, &FILES, &rs256_verifier(Some("other"), Some("prod"))).unwrap_err();
    assert!(err.contains("key id `release`"), "{err}");
    let err = verify(&sigs, &FILES, &rs256_verifier(None, None)).unwrap_err();
    assert!(err.contains("scope mismatch"), "{err}");
    let unscoped = signed_by(&rs256_signer(None, None), &FILES);
    let err = verify(&unscoped, &FILES, &rs256_verifier(None, Some("prod"))).unwrap_err();
    assert!(err.contains("scope mismatch"), "{err}");
}

#[test]
fn the_signatures_file_holds_exactly_one_jws() {
    let v = rs256_verifier(None, None);
    let token = single_jws(&signed_by(&rs256_signer(None, None), &FILES)).unwrap();
    for (text, why) in [
        (json!({"signatures": []}), "missing JWT"),
        (json!({"signatures": [token, token]}), "multiple JWTs"),
        (json!({"signatures": [1]}), "strings"),
        (json!({"signatures": "x"}), "array"),
        (json!({"signatures": [token], "plugin": "vault"}), "plugin"),
        (json!({"signatures": ["a.b"]}), "compact JWS"),
        (json!({"signatures": ["a.b.c.d"]}), "compact JWS"),
        (json!([]), "object"),
    ] {
        let err = verify(text.to_string().as_bytes(), &FILES, &v).unwrap_err();
        assert!(
            err.starts_with(".signatures.json: ") && err.contains(why),
            "{text}: {err}"
        );
    }
}

#[test]
fn verifier_keys_are_checked_at_configuration() {
    let rsa = |alg: &str, key: &str| Verifier::new(alg, key, None, None);
    assert_eq!(rsa("", RS256_PUB).unwrap().algorithm(), Alg::RS256);
    assert_eq!(rsa("PS512", RS256_PUB).unwrap().algorithm(), Alg::PS512);
    for (alg, key, why) in [
        ("none", RS256_PUB, "unsupported"),
        ("RS257", RS256_PUB, "unsupported"),
        ("RS256", "not a pem", "PEM"),
        ("RS256", ES256_PUB, "does not fit"),
        ("ES256", RS256_PUB, "does not fit"),
        ("EdDSA", ES256_PUB, "does not fit"),
        ("HS256", RS256_PUB, "not a PEM key"),
        ("HS256", "short secret", "32"),
        ("HS384", "0123456789012345678901234567890123456789", "48"),
        (
            "RS256",
            include_str!("../../../../envoy/test-keys/rs256.key.pem"),
            "private key",
        ),
        (
            "RS256",
            "-----BEGIN FOO-----\nAAAA\n-----END FOO-----\n",
            "not supported",
        ),
    ] {
        let err = rsa(alg, key).unwrap_err();
        assert!(err.contains(why), "{alg}: {err}");
    }
    let weak = rsa("RS256", include_str!("testdata/weak-rsa1024.pub.pem")).unwrap_err();
    assert!(weak.contains("1024 bits"), "{weak}");
    // Debug output never shows key material.
    let shown = format!("{:?}", rs256_verifier(Some("k"), None));
    assert!(shown.contains("RS256") && !shown.contains("MII"), "{shown}");
}
