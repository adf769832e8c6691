use super::*;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn canon(text: &str) -> String {
    String::from_utf8(canonical(text.as_bytes()).unwrap()).unwrap()
}

/// Digests OPA's own tests pin (`v1/bundle/bundle_test.go`:
/// `TestReadWithSignaturesWithBaseDir` for SHA-256, `TestVerifyBundleFileHash`
/// for SHA-512), computed by OPA's hasher.
#[test]
fn matches_digests_from_opas_tests() {
    let cases: [(&str, &str, HashAlg, &str); 6] = [
        (".manifest", r#"{"revision": "quickbrownfaux"}"#, HashAlg::Sha256,
         "507a2c38a1441db58d2cb87982c42aa91a4342ef422a6b542eddebeef6f0412f"),
        ("a/b/c/data.json", "[1,2,3]", HashAlg::Sha256,
         "a615eeaee21de5179de080de8c3052c8da901138406ba71c38c032845f7d54f4"),
        ("http/policy/policy.rego", "package example", HashAlg::Sha256,
         "f664461e303b37c20c5e0be2900881678cdf8e860aa433a5a14d494ba3c66649"),
        ("a/b/c/data.json", "[1,2,3]", HashAlg::Sha512,
         "60f7b5dc86ded48785436192a08dbfd04894d7f1b417c4f8d3714679a7f78cb3c833f16a8559a1cf1f32968747dc1d95ef34826263dacf125ded8f5c374be4c0"),
        ("a/b/y/data.yaml", "foo: 1", HashAlg::Sha512,
         "20f27a640a233e6524fe7d138898583cd43475724806feb26be7f214e1d10b29edf6a0d3cb08f82107a45686b61b8fdabab6406cf4e70efe134f42238dbd70ab"),
        ("policy.wasm", "modules-compiled-as-wasm-binary", HashAlg::Sha512,
         "4f73765168fd8b5c294b739436da312cc5e979faf09f67bf576d36ea79a4f79c70cbb3c33d06ff65f531a9f42abd0a8f4daacc554cb521837e876dc28f56ce89"),
    ];
    for (path, content, alg, want) in cases {
        let got = hex(&file_digest(path, content.as_bytes(), alg).unwrap());
        assert_eq!(got, want, "{path}");
    }
}

#[test]
fn structured_files_are_the_ones_opa_names() {
    for path in [
        "data.json",
        "a/data.json",
        "a/data.yaml",
        ".manifest",
        "x/signatures.json",
    ] {
        assert!(is_structured(path), "{path}");
    }
    // data.yml is hashed as bytes by OPA (`IsStructuredDoc` omits it).
    for path in ["data.yml", "p.rego", "data.json.bak", "mydata.json"] {
        assert!(!is_structured(path), "{path}");
    }
    let spaced = file_digest("data.yml", b"a:  1", HashAlg::Sha256).unwrap();
    assert_eq!(spaced, HashAlg::Sha256.digest(b"a:  1"));
}

#[test]
fn json_is_canonical_sorted_compact_and_keeps_numbers_as_written() {
    assert_eq!(
        canon(" {\"b\": [1.50, -0, 1E+3, 2e-7], \"a\" : {\"z\":null, \"y\": true}, \"\": false}\n"),
        r#"{"":false,"a":{"y":true,"z":null},"b":[1.50,-0,1E+3,2e-7]}"#
    );
    // Keys sort by their bytes, after unescaping.
    assert_eq!(
        canon(r#"{"\u00e9": 1, "z": 2, "Z": 3}"#),
        "{\"Z\":3,\"z\":2,\"é\":1}"
    );
    // Go keeps the last of duplicate keys.
    assert_eq!(canon(r#"{"a": 1, "a": 2}"#), r#"{"a":2}"#);
    assert_eq!(canon("[]"), "[]");
    assert_eq!(canon("{}"), "{}");
}

#[test]
fn strings_are_escaped_as_go_writes_them_without_html_escaping() {
    assert_eq!(
        canon(r#""<a href=\"x\">&amp;</a>""#),
        r#""<a href=\"x\">&amp;</a>""#
    );
    assert_eq!(
        canon(r#""\b\f\n\r\t\u0001\u001f\u007f\/\\""#),
        "\"\\b\\f\\n\\r\\t\\u0001\\u001f\u{7f}/\\\\\""
    );
    assert_eq!(canon(r#""\u2028\u2029""#), r#""\u2028\u2029""#);
    assert_eq!(canon(r#""\ud83d\ude00 é""#), "\"😀 é\"");
    // A lone surrogate becomes U+FFFD, as in Go.
    assert_eq!(canon(r#""\ud800x""#), "\"\u{FFFD}x\"");
}

#[test]
fn yaml_documents_hash_as_go_renders_their_values() {
    assert_eq!(canon("foo: 1"), r#"{"foo":1}"#);
    assert_eq!(
        canon("b: [1.0, 0.5, 1e21, 1.5e-7, 100, -3]\na: 'x'\n"),
        r#"{"a":"x","b":[1,0.5,1e+21,1.5e-7,100,-3]}"#
    );
    // Valid JSON in a data.yaml is read as JSON: numbers as written.
    assert_eq!(canon("{\"n\": 1.0}"), r#"{"n":1.0}"#);
}

#[test]
fn go_float_formatting() {
    for (f, want) in [
        (1.0, "1"),
        (0.1, "0.1"),
        (-0.0, "-0"),
        (1e20, "100000000000000000000"),
        (1e21, "1e+21"),
        (1.5e300, "1.5e+300"),
        (0.000001, "0.000001"),
        (0.0000001, "1e-7"),
        (1.25e-10, "1.25e-10"),
        (-2.5e22, "-2.5e+22"),
    ] {
        assert_eq!(go_float(f), want, "{f}");
    }
}

#[test]
fn hash_algorithms_are_opas_names_without_the_broken_ones() {
    for name in [
        "SHA-224",
        "SHA-256",
        "SHA-384",
        "SHA-512",
        "SHA-512-224",
        "SHA-512-256",
    ] {
        assert!(HashAlg::parse(name).is_ok(), "{name}");
    }
    assert!(HashAlg::parse("MD5").unwrap_err().contains("collisions"));
    assert!(HashAlg::parse("SHA-1").unwrap_err().contains("collisions"));
    assert!(HashAlg::parse("sha256").unwrap_err().contains("unknown"));
    assert!(HashAlg::parse("").unwrap_err().contains("no hash"));
    assert_eq!(HashAlg::Sha384.digest(b"").len(), 48);
    assert_eq!(HashAlg::Sha512_256.digest(b"").len(), 32);
}

#[test]
fn malformed_documents_are_errors() {
    assert!(canonical(b"\xff").is_err());
    assert!(canonical(b"{\"a\": [1, 2}").is_err()); // neither JSON nor YAML
    let deep = "[".repeat(200) + &"]".repeat(200);
    // Too deep for the JSON reader; the YAML reader refuses it too.
    assert!(canonical(deep.as_bytes()).is_err());
}
