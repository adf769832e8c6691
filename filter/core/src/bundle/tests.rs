//! End-to-end: bundle bytes in, [`Bundle`] or error out.

use super::testkit::*;
use super::*;
use crate::algorithm::Alg;
use serde_json::json;

const POLICY: &[u8] = b"package envoy.authz\n\nimport rego.v1\n\ndefault allow := false\n\nallow if input.attributes.request.http.method == \"GET\"\n";

fn v1(bytes: &[u8]) -> Result<Bundle, String> {
    read(bytes, None, RegoVersion::V1)
}

fn bundle(files: &[(&str, &[u8])]) -> Vec<u8> {
    build(files, None).unwrap()
}

#[test]
fn good_bundle_v1() {
    let b = v1(&bundle(&[
        (
            ".manifest",
            br#"{"revision": "2024-06-01", "roots": ["envoy"], "metadata": {"by": "ci"}}"#,
        ),
        ("envoy/authz/policy.rego", POLICY),
        ("envoy/authz/data.json", br#"{"admins": ["alice"]}"#),
    ]))
    .unwrap();
    assert_eq!(b.revision, "2024-06-01");
    assert_eq!(b.roots, ["envoy"]);
    assert_eq!(b.modules.len(), 1);
    assert_eq!(b.modules["envoy/authz/policy.rego"].as_bytes(), POLICY);
    assert_eq!(
        b.module_versions["envoy/authz/policy.rego"],
        RegoVersion::V1
    );
    assert_eq!(b.data, json!({"envoy": {"authz": {"admins": ["alice"]}}}));
    assert_eq!(b.metadata["by"], "ci");
    assert!(!b.verified);
    assert!(b.warnings.is_empty(), "{:?}", b.warnings);
}

#[test]
fn a_bundle_without_manifest_gets_opas_defaults() {
    let b = read(&bundle(&[("p.rego", b"package p")]), None, RegoVersion::V0).unwrap();
    assert_eq!(b.revision, "");
    assert_eq!(b.roots, [""]);
    assert_eq!(b.module_versions["p.rego"], RegoVersion::V0);
    assert_eq!(b.data, json!({}));
}

#[test]
fn v0_manifest_rego_version() {
    let files: [(&str, &[u8]); 2] = [
        (".manifest", br#"{"rego_version": 0}"#),
        ("legacy.rego", b"package legacy\nallow { true }\n"),
    ];
    let b = v1(&bundle(&files)).unwrap();
    assert_eq!(b.module_versions["legacy.rego"], RegoVersion::V0);
}

#[test]
fn file_rego_versions_override_the_bundle_version() {
    let b = read(
        &bundle(&[
            (
                ".manifest",
                br#"{"rego_version": 1, "file_rego_versions": {"/legacy/*.rego": 0}}"#,
            ),
            ("legacy/old.rego", b"package legacy.old"),
            ("current.rego", b"package current"),
        ]),
        None,
        RegoVersion::V0,
    )
    .unwrap();
    assert_eq!(b.module_versions["legacy/old.rego"], RegoVersion::V0);
    assert_eq!(b.module_versions["current.rego"], RegoVersion::V1);
}

#[test]
fn nested_data_merges_at_directory_paths() {
    let b = v1(&bundle(&[
        (
            "data.json",
            br#"{"x": {"y": true}, "a": {"b": {"z": true}}}"#,
        ),
        ("a/b/c/data.json", b"[1,2,3]"),
        ("a/b/d/data.json", b"true"),
        ("a/b/y/data.yaml", b"foo: 1"),
        ("a/b/g/data.yml", b"1"),
    ]))
    .unwrap();
    // OPA's `testReadBundle` expectation.
    assert_eq!(
        b.data,
        json!({"a": {"b": {"c": [1, 2, 3], "d": true, "g": 1, "y": {"foo": 1}, "z": true}}, "x": {"y": true}})
    );
}

#[test]
fn data_conflict_names_both_files() {
    let err = v1(&bundle(&[
        ("data.json", br#"{"users": {"alice": {"role": "admin"}}}"#),
        ("users/alice/data.json", br#"{"role": "viewer"}"#),
    ]))
    .unwrap_err();
    assert!(
        err.contains("users/alice/data.json")
            && err.contains("`data.json`")
            && err.contains("/users/alice/role"),
        "{err}"
    );
}

#[test]
fn roots_violation_by_a_module_or_data() {
    let manifest: (&str, &[u8]) = (".manifest", br#"{"roots": ["envoy/authz"]}"#);
    let err = v1(&bundle(&[manifest, ("x.rego", b"package envoy.other")])).unwrap_err();
    assert!(
        err.starts_with("x.rego:") && err.contains("envoy.other") && err.contains("`envoy/authz`"),
        "{err}"
    );
    let err = v1(&bundle(&[
        manifest,
        ("envoy/data.json", br#"{"authz": {}, "evil": 1}"#),
    ]))
    .unwrap_err();
    assert!(
        err.starts_with("envoy/data.json:") && err.contains("/envoy/evil"),
        "{err}"
    );
    // Within the roots, and objects on the way to them, load.
    v1(&bundle(&[
        manifest,
        ("envoy/authz/p.rego", b"package envoy.authz.p"),
        ("data.json", br#"{"envoy": {"authz": {"n": 1}}}"#),
    ]))
    .unwrap();
    // No roots at all permit nothing.
    let err = v1(&bundle(&[
        (".manifest", br#"{"roots": []}"#),
        ("p.rego", b"package p"),
    ]))
    .unwrap_err();
    assert!(err.contains("outside the manifest roots []"), "{err}");
}

#[test]
fn modules_must_be_utf8_with_a_package() {
    let err = v1(&bundle(&[("bad.rego", b"package p\n# \xff\n")])).unwrap_err();
    assert!(err.starts_with("bad.rego: not UTF-8"), "{err}");
    let err = v1(&bundle(&[("none.rego", b"allow := true")])).unwrap_err();
    assert!(
        err.starts_with("none.rego: ") && err.contains("package"),
        "{err}"
    );
}

#[test]
fn files_opa_reads_differently_are_refused_and_others_ignored() {
    for (path, why) in [
        ("a/patch.json", "delta"),
        ("sub/.manifest", "manifest"),
        ("sub/x.manifest", "manifest"),
        ("sub/signatures.json", "signatures"),
        (".hidden/data.json", "leading `.`"),
        ("wasm.manifest", "manifest"),
    ] {
        let err = v1(&bundle(&[(path, b"{}")])).unwrap_err();
        assert!(err.starts_with(path) && err.contains(why), "{path}: {err}");
    }
    let b = v1(&bundle(&[("README.md", b"hi"), ("policy.wasm", b"\0asm")])).unwrap();
    assert_eq!(b.warnings.len(), 2, "{:?}", b.warnings);
    assert!(b.warnings[0].starts_with("README.md: ignored"));
}

#[test]
fn the_wasm_target_is_refused() {
    let err = v1(&bundle(&[
        (
            ".manifest",
            br#"{"wasm": [{"entrypoint": "envoy/authz/allow", "module": "/policy.wasm"}]}"#,
        ),
        ("policy.wasm", b"\0asm"),
    ]))
    .unwrap_err();
    assert!(
        err.starts_with(".manifest: ") && err.contains("Wasm"),
        "{err}"
    );
}

#[test]
fn hostile_archives_are_refused_end_to_end() {
    let traversal = raw_bundle(&[file("../../etc/policy.rego", b"package p")]);
    assert!(v1(&traversal).unwrap_err().contains(".."));
    let symlink = raw_bundle(&[Raw {
        name: b"data.json",
        kind: b'2',
        data: b"",
        link: b"/etc/passwd",
    }]);
    assert!(v1(&symlink).unwrap_err().contains("links are not allowed"));
    let bomb = raw_bundle(&[file("data.json", &vec![b' '; 2 << 20])]);
    let limits = Limits {
        unpacked_bytes: 1 << 20,
        ..Limits::default()
    };
    let err = read_with(&bomb, None, RegoVersion::V1, &limits).unwrap_err();
    assert!(err.contains("unpacks to more than"), "{err}");
}

fn policy_files() -> Vec<(&'static str, &'static [u8])> {
    vec![
        (".manifest", br#"{"revision": "r1", "roots": ["envoy"]}"#),
        ("envoy/authz/policy.rego", POLICY),
        ("envoy/authz/data.json", br#"{"admins": ["alice"]}"#),
    ]
}

/// A bundle holding `files` and the `.signatures.json` `signer` made
/// for `signed` (which may differ from `files`).
fn resigned(files: &[(&str, &[u8])], signed: &[(&str, &[u8])], signer: &Signer) -> Vec<u8> {
    let sigs = signer.signatures(signed).unwrap();
    let mut all = files.to_vec();
    all.push((".signatures.json", &sigs));
    bundle(&all)
}

#[test]
fn signed_good() {
    let key = rs256_verifier(Some("ci"), Some("prod"));
    let signed = build(
        &policy_files(),
        Some(&rs256_signer(Some("ci"), Some("prod"))),
    )
    .unwrap();
    let b = read(&signed, Some(&key), RegoVersion::V1).unwrap();
    assert!(b.verified);
    assert_eq!(b.revision, "r1");
    assert_eq!(b.data["envoy"]["authz"]["admins"][0], "alice");
}

#[test]
fn unsigned_refused_when_a_key_is_configured() {
    let err = read(
        &bundle(&policy_files()),
        Some(&rs256_verifier(None, None)),
        RegoVersion::V1,
    )
    .unwrap_err();
    assert!(err.contains("not signed"), "{err}");
}

#[test]
fn signed_refused_without_a_key_as_in_opa() {
    let signed = build(&policy_files(), Some(&rs256_signer(None, None))).unwrap();
    let err = v1(&signed).unwrap_err();
    assert!(err.contains("verification key not provided"), "{err}");
}

#[test]
fn tampered_file_refused() {
    let mut files = policy_files();
    files[2].1 = br#"{"admins": ["alice", "mallory"]}"#;
    let bytes = resigned(&files, &policy_files(), &rs256_signer(None, None));
    let err = read(&bytes, Some(&rs256_verifier(None, None)), RegoVersion::V1).unwrap_err();
    assert!(
        err.starts_with("envoy/authz/data.json: ") && err.contains("digest mismatch"),
        "{err}"
    );
    // Reformatting a signed JSON document is not tampering (OPA hashes it
    // canonically).
    files[2].1 = b"{\n  \"admins\" : [ \"alice\" ]\n}";
    let bytes = resigned(&files, &policy_files(), &rs256_signer(None, None));
    read(&bytes, Some(&rs256_verifier(None, None)), RegoVersion::V1).unwrap();
}

#[test]
fn file_added_after_signing_refused() {
    let mut files = policy_files();
    files.push((
        "envoy/authz/backdoor.rego",
        b"package envoy.authz\nallow := true",
    ));
    let bytes = resigned(&files, &policy_files(), &rs256_signer(None, None));
    let err = read(&bytes, Some(&rs256_verifier(None, None)), RegoVersion::V1).unwrap_err();
    assert!(
        err.starts_with("envoy/authz/backdoor.rego: not listed"),
        "{err}"
    );
}

#[test]
fn file_removed_after_signing_refused() {
    let files = &policy_files()[..2];
    let bytes = resigned(files, &policy_files(), &rs256_signer(None, None));
    let err = read(&bytes, Some(&rs256_verifier(None, None)), RegoVersion::V1).unwrap_err();
    assert!(
        err.contains("not in the bundle: envoy/authz/data.json"),
        "{err}"
    );
}

#[test]
fn wrong_key_refused() {
    let signed = build(&policy_files(), Some(&attacker_signer())).unwrap();
    let err = read(&signed, Some(&rs256_verifier(None, None)), RegoVersion::V1).unwrap_err();
    assert!(err.contains("does not verify"), "{err}");
    let key = Verifier::new("RS256", ATTACKER_PUB, None, None).unwrap();
    read(&signed, Some(&key), RegoVersion::V1).unwrap();
}

#[test]
fn alg_none_jws_refused() {
    let sigs = rs256_signer(None, None)
        .signatures(&policy_files())
        .unwrap();
    let value: serde_json::Value = serde_json::from_slice(&sigs).unwrap();
    let token = value["signatures"][0].as_str().unwrap();
    let payload = token.split('.').nth(1).unwrap();
    let none = format!("{}.{payload}.", base64_url(br#"{"alg":"none"}"#));
    let forged = json!({ "signatures": [none] }).to_string();
    let mut files = policy_files();
    files.push((".signatures.json", forged.as_bytes()));
    let err = read(
        &bundle(&files),
        Some(&rs256_verifier(None, None)),
        RegoVersion::V1,
    )
    .unwrap_err();
    assert!(err.contains("`none`"), "{err}");
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    URL_SAFE_NO_PAD.encode(bytes)
}

#[test]
fn signatures_cover_ignored_files_too() {
    let mut files = policy_files();
    files.push(("README.md", b"docs"));
    let signed = build(&files, Some(&es256_signer())).unwrap();
    let key = Verifier::new("ES256", ES256_PUB, None, None).unwrap();
    let b = read(&signed, Some(&key), RegoVersion::V1).unwrap();
    assert_eq!(b.warnings.len(), 1);
    let mut changed = files.clone();
    changed[3].1 = b"docs, edited";
    let bytes = resigned(&changed, &files, &es256_signer());
    assert!(read(&bytes, Some(&key), RegoVersion::V1)
        .unwrap_err()
        .starts_with("README.md: "));
}

#[test]
fn build_refuses_a_second_signatures_file() {
    let files: [(&str, &[u8]); 1] = [("/.signatures.json", b"{}")];
    assert!(build(&files, Some(&rs256_signer(None, None))).is_err());
    assert!(Signer::from_pem(Alg::HS256, b"x", None, None).is_err());
}
