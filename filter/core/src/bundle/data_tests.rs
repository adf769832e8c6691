use super::*;
use serde_json::json;

fn dir(path: &str) -> Vec<String> {
    data_dir(path).unwrap()
}

#[test]
fn files_merge_at_their_directory_path() {
    let mut tree = DataTree::default();
    tree.insert(
        &dir("data.json"),
        json!({"x": {"y": true}, "a": {"b": {"z": true}}}),
        "data.json",
    )
    .unwrap();
    tree.insert(&dir("a/b/c/data.json"), json!([1, 2, 3]), "a/b/c/data.json")
        .unwrap();
    tree.insert(&dir("a/b/d/data.json"), json!(true), "a/b/d/data.json")
        .unwrap();
    tree.insert(
        &dir("a/b/y/data.yaml"),
        json!({"foo": 1}),
        "a/b/y/data.yaml",
    )
    .unwrap();
    // OPA's `testReadBundle` expectation.
    assert_eq!(
        tree.into_value(),
        json!({"a": {"b": {"c": [1, 2, 3], "d": true, "y": {"foo": 1}, "z": true}}, "x": {"y": true}})
    );
}

#[test]
fn objects_merge_key_by_key_in_either_order() {
    let mut tree = DataTree::default();
    tree.insert(&dir("a/data.json"), json!({"b": {"c": 1}}), "a/data.json")
        .unwrap();
    tree.insert(&dir("a/b/data.json"), json!({"d": 2}), "a/b/data.json")
        .unwrap();
    tree.insert(&dir("data.json"), json!({"a": {"e": 3}}), "data.json")
        .unwrap();
    assert_eq!(
        tree.into_value(),
        json!({"a": {"b": {"c": 1, "d": 2}, "e": 3}})
    );
}

#[test]
fn conflicts_name_both_files() {
    let cases = [
        // A value where another file needs an object.
        (
            ("a/data.json", json!({"b": 1})),
            ("a/b/c/data.json", json!(2)),
            "/a/b",
        ),
        // The same leaf twice.
        (
            ("data.json", json!({"a": {"b": 1}})),
            ("a/data.json", json!({"b": 2})),
            "/a/b",
        ),
        // An object where another file set a value.
        (
            ("a/b/data.json", json!("x")),
            ("a/data.json", json!({"b": {"c": 1}})),
            "/a/b",
        ),
        // A directory path through a value.
        (
            ("data.json", json!({"a": 5})),
            ("a/b/data.json", json!({})),
            "/a",
        ),
    ];
    for ((first, v1), (second, v2), at) in cases {
        let mut tree = DataTree::default();
        tree.insert(&dir(first), v1, first).unwrap();
        let err = tree.insert(&dir(second), v2, second).unwrap_err();
        assert!(
            err.starts_with(second)
                && err.contains(&format!("`{at}`"))
                && err.contains(&format!("`{first}`")),
            "{first} then {second}: {err}"
        );
    }
}

#[test]
fn root_data_must_be_an_object() {
    let mut tree = DataTree::default();
    let err = tree.insert(&[], json!([1]), "data.json").unwrap_err();
    assert!(err.contains("must be a JSON object"), "{err}");
}

#[test]
fn hidden_directories_are_refused_not_renamed() {
    assert!(data_dir(".hidden/data.json")
        .unwrap_err()
        .contains("leading `.`"));
    assert_eq!(dir("a/.b/data.json"), ["a", ".b"]);
    assert!(dir("data.json").is_empty());
}

#[test]
fn json_data_is_strict() {
    let err = parse_json("x/data.json", br#"{"a": 1, "a": 2}"#).unwrap_err();
    assert!(
        err.starts_with("x/data.json") && err.contains("duplicate"),
        "{err}"
    );
    assert!(parse_json("x/data.json", b"{").is_err());
}

#[test]
fn yaml_reads_like_opa() {
    assert_eq!(
        parse_yaml(
            "d/data.yaml",
            b"a: 1\nb: [true, null, 'nope', \"offset\", x]\nc: 2.5\n"
        )
        .unwrap(),
        json!({"a": 1, "b": [true, null, "nope", "offset", "x"], "c": 2.5})
    );
    // Merge keys apply, as in OPA's YAML library.
    assert_eq!(
        parse_yaml(
            "d/data.yaml",
            b"base: &b {x: 1}\nderived:\n  <<: *b\n  z: 2\n"
        )
        .unwrap(),
        json!({"base": {"x": 1}, "derived": {"x": 1, "z": 2}})
    );
}

#[test]
fn yaml_that_opa_would_read_differently_is_refused() {
    for text in [
        "admin: no\n",
        "admin: yes # really\n",
        "- on\n",
        "flags: [y, n]\n",
        "m: {a: Off}\n",
        "on:\n  push: 1\n",
        "ON: 1\n",
        // `y` as a key: OPA's loader turns it into the key "true".
        "point:\n  x: 1\n  y: 2\n",
    ] {
        let err = parse_yaml("d/data.yaml", text.as_bytes()).unwrap_err();
        assert!(err.contains("YAML 1.1"), "{text:?}: {err}");
    }
    // Hidden from a line scan by an anchor, or a number only YAML 1.1
    // knows: refused too. Quoting cannot be seen in the parsed value, so a
    // quoted `'no'` or `"0755"` is refused as well (data.json holds it).
    for text in [
        "a: &x yes\n",
        "mode: 0755\n",
        "n: 1_000\n",
        "t: 1:30\n",
        "a: 'no'\n",
        "a: \"0755\"\n",
    ] {
        let err = parse_yaml("d/data.yaml", text.as_bytes()).unwrap_err();
        assert!(err.contains("YAML 1.1"), "{text:?}: {err}");
    }
    // A longer word, a plain number both read alike, a time: a string or
    // number to both.
    for text in [
        "a: nope\n",
        "a: 0\n",
        "a: 10.50\n",
        "a: \"12:30pm\"\n",
        "a: v0755\n",
        "a: not, no way\n",
        "a: \"#no\"\n",
    ] {
        assert!(
            parse_yaml("d/data.yaml", text.as_bytes()).is_ok(),
            "{text:?}"
        );
    }
}

#[test]
fn yaml_refusals() {
    for (text, why) in [
        ("a: 1\na: 2\n", "duplicate"),
        ("a: !custom 1\n", "tags"),
        ("1: a\n", "keys must be strings"),
        ("a: .inf\n", "finite"),
        ("a: [\n", "not valid YAML"),
        ("$serde_json::private::Number: '1'\n", "reserved"),
    ] {
        let err = parse_yaml("d/data.yaml", text.as_bytes()).unwrap_err();
        assert!(
            err.starts_with("d/data.yaml: ") && err.contains(why),
            "{text:?}: {err}"
        );
    }
}
