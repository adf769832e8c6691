use super::*;

fn segs(path: &str) -> Vec<String> {
    if path.is_empty() {
        return Vec::new();
    }
    path.split('/').map(str::to_owned).collect()
}

#[test]
fn reads_opas_fields() {
    let m = parse(
        br#"{"revision": "r7", "roots": ["/envoy/", "shared/lib"], "rego_version": 0,
             "file_rego_versions": {"/envoy/new/*.rego": 1}, "metadata": {"team": "payments"},
             "wasm": []}"#,
    )
    .unwrap();
    assert_eq!(m.revision, "r7");
    assert_eq!(m.roots, ["envoy", "shared/lib"]);
    assert_eq!(m.rego_version, Some(RegoVersion::V0));
    assert_eq!(m.metadata["team"], "payments");
    assert!(m.warnings.is_empty());
}

#[test]
fn defaults_when_absent_or_null() {
    for text in [
        &b"{}"[..],
        br#"{"roots": null, "revision": null, "rego_version": null}"#,
    ] {
        let m = parse(text).unwrap();
        assert_eq!(m, Manifest::default());
        assert_eq!(m.roots, [""]);
    }
}

#[test]
fn unknown_fields_are_ignored_with_a_warning() {
    let m = parse(br#"{"revision": "r", "root": ["typo"]}"#).unwrap();
    assert_eq!(m.roots, [""]);
    assert_eq!(m.warnings.len(), 1);
    assert!(
        m.warnings[0].contains("unknown field `root`"),
        "{:?}",
        m.warnings
    );
}

#[test]
fn refuses_wasm_modules_and_bad_types() {
    let err = parse(br#"{"wasm": [{"entrypoint": "authz/allow", "module": "/policy.wasm"}]}"#)
        .unwrap_err();
    assert!(err.contains("Wasm"), "{err}");
    for (text, why) in [
        (&br#"[]"#[..], "object"),
        (br#"{"revision": 1}"#, "revision"),
        (br#"{"roots": "envoy"}"#, "roots"),
        (br#"{"roots": [1]}"#, "roots"),
        (br#"{"rego_version": 2}"#, "0 or 1"),
        (br#"{"rego_version": "1"}"#, "0 or 1"),
        (br#"{"rego_version": 1.0}"#, "0 or 1"),
        (br#"{"file_rego_versions": {"*.rego": 3}}"#, "0 or 1"),
        (br#"{"file_rego_versions": {"[": 1}}"#, "unclosed"),
        (br#"{"metadata": []}"#, "metadata"),
        (br#"{"wasm": {}}"#, "wasm"),
        (br#"{"revision": "a", "revision": "b"}"#, "duplicate"),
        (b"{", "JSON"),
    ] {
        let err = parse(text).unwrap_err();
        assert!(
            err.contains(why),
            "{}: {err}",
            String::from_utf8_lossy(text)
        );
    }
}

#[test]
fn overlapping_roots_are_refused_as_in_opa() {
    let err = parse(br#"{"roots": ["a/b", "a"]}"#).unwrap_err();
    assert!(err.contains("`a/b` and `a` overlap"), "{err}");
    assert!(parse(br#"{"roots": ["", "a"]}"#).is_err());
    // A shared prefix of characters is not an overlap.
    assert!(parse(br#"{"roots": ["a", "another_root"]}"#).is_ok());
}

#[test]
fn roots_contain_by_segments() {
    let m = parse(br#"{"roots": ["a/b", "foo"]}"#).unwrap();
    assert!(m.permits(&segs("a/b")));
    assert!(m.permits(&segs("a/b/c")));
    assert!(m.permits(&segs("foo/bar")));
    assert!(!m.permits(&segs("a")));
    assert!(!m.permits(&segs("a/bc")));
    assert!(!m.permits(&segs("fo")));
    assert!(m.leads_to_root(&segs("a")));
    assert!(m.leads_to_root(&segs("")));
    assert!(!m.leads_to_root(&segs("a/b")));
    assert!(!m.leads_to_root(&segs("b")));
    let everything = Manifest::default();
    assert!(everything.permits(&segs("")));
    assert!(everything.permits(&segs("x/y")));
    let nothing = parse(br#"{"roots": []}"#).unwrap();
    assert!(!nothing.permits(&segs("x")));
}

#[test]
fn module_versions_follow_patterns_then_the_manifest_then_the_default() {
    let m = parse(
        br#"{"rego_version": 1, "file_rego_versions": {"/legacy/*.rego": 0, "old.rego": 0}}"#,
    )
    .unwrap();
    assert_eq!(
        m.version_of("legacy/a/p.rego", RegoVersion::V1).unwrap(),
        RegoVersion::V0
    );
    assert_eq!(
        m.version_of("old.rego", RegoVersion::V1).unwrap(),
        RegoVersion::V0
    );
    assert_eq!(
        m.version_of("new/p.rego", RegoVersion::V0).unwrap(),
        RegoVersion::V1
    );
    let plain = Manifest::default();
    assert_eq!(
        plain.version_of("p.rego", RegoVersion::V0).unwrap(),
        RegoVersion::V0
    );
    assert_eq!(
        plain.version_of("p.rego", RegoVersion::V1).unwrap(),
        RegoVersion::V1
    );
}

#[test]
fn disagreeing_patterns_are_refused() {
    let m = parse(br#"{"file_rego_versions": {"*.rego": 0, "/x/*": 1}}"#).unwrap();
    let err = m.version_of("x/p.rego", RegoVersion::V1).unwrap_err();
    assert!(err.contains("disagree"), "{err}");
    // Agreeing patterns are fine.
    let m = parse(br#"{"file_rego_versions": {"*.rego": 0, "/x/*": 0}}"#).unwrap();
    assert_eq!(
        m.version_of("x/p.rego", RegoVersion::V1).unwrap(),
        RegoVersion::V0
    );
}

#[test]
fn the_number_of_roots_is_capped() {
    let roots: Vec<String> = (0..=MAX_ROOTS).map(|i| format!("r{i}")).collect();
    let text = serde_json::json!({ "roots": roots }).to_string();
    let err = parse(text.as_bytes()).unwrap_err();
    assert!(err.contains("over the 1024 accepted"), "{err}");
    let fine = serde_json::json!({ "roots": &roots[..MAX_ROOTS] }).to_string();
    assert!(parse(fine.as_bytes()).is_ok());
}
