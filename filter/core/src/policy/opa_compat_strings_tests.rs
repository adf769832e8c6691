//! OPA compatibility of regorus's string builtins, as patched in
//! `vendor/regorus/src/builtins/{strings,glob}.rs`. Every expected value was
//! observed with OPA 1.x (`opa_bindings`, see `tests/differential`).
//! (regorus's own unit tests do not build in the vendored copy: its
//! dev-dependencies are not vendored.)

use super::*;
use serde_json::json;

/// Evaluates `x := <expr>` in `package t` with `input`.
fn eval_with(expr: &str, input: serde_json::Value) -> Result<serde_json::Value, String> {
    let modules = BTreeMap::from([("t.rego".to_owned(), format!("package t\nx := {expr}\n"))]);
    let p = Policy::compile(&modules, None, "data.t.x").map_err(|e| e.message)?;
    let v = p.evaluate(Value::from(input))?;
    let s = v.to_json_str().map_err(|e| e.to_string())?;
    serde_json::from_str(&s).map_err(|e| e.to_string())
}

fn eval(expr: &str) -> serde_json::Value {
    eval_with(expr, json!({})).unwrap_or_else(|e| panic!("{expr}: {e}"))
}

#[test]
fn upper_lower_use_go_simple_case_mapping() {
    // OPA: upper("ß") = "ß", upper("ᾳß") = "ᾼß", lower("İΣ") = "iσ",
    // lower("ΣΑΣ") = "σασ" (no final sigma).
    assert_eq!(eval(r#"upper("ß")"#), json!("ß"));
    assert_eq!(eval(r#"upper("ᾳß")"#), json!("ᾼß"));
    assert_eq!(eval(r#"lower("İΣ")"#), json!("iσ"));
    assert_eq!(eval(r#"lower("ΣΑΣ")"#), json!("σασ"));
    assert_eq!(
        eval(r#"upper("ﬁ ŉ ǰ ΐ ᾀᾇᾐᾗᾠᾧ ᾳ ῃ ῳ ᾴ ᾶ ᾼ")"#),
        json!("ﬁ ŉ ǰ ΐ ᾈᾏᾘᾟᾨᾯ ᾼ ῌ ῼ ᾴ ᾶ ᾼ")
    );
    assert_eq!(eval(r#"lower("ᾼ ῌ ῼ ᾈ")"#), json!("ᾳ ῃ ῳ ᾀ"));
    assert_eq!(eval(r#"upper("ǅ ǆ ǈ")"#), json!("Ǆ Ǆ Ǉ"));
    assert_eq!(eval(r#"lower("ǅ K Å")"#), json!("ǆ k å"));
}

#[test]
fn replace_n_is_one_pass_in_sorted_key_order() {
    // OPA (Go's strings.NewReplacer over the sorted pairs).
    let cases = [
        (r#"{"a": "at", "t": "x"}, "cat""#, "catx"),
        (r#"{"a": "4", "t": "7"}, "attack""#, "4774ck"),
        // At one position the first key in sorted order wins, not the longest.
        (r#"{"ab": "1", "abc": "2"}, "abcab""#, "1c1"),
        (r#"{"a": "1", "ab": "2"}, "ab""#, "1b"),
        (r#"{"abc": "2", "b": "1"}, "abcab""#, "2a1"),
        (r#"{"ab": "1", "b": "2", "bc": "3"}, "abc""#, "1c"),
        (r#"{"a": "b", "b": "a"}, "aabb""#, "bbaa"),
        (r#"{"aa": "X"}, "aaaaa""#, "XXa"),
        (r#"{}, "abc""#, "abc"),
        // The empty key matches at every position, including both ends.
        (r#"{"": "-"}, "abc""#, "-a-b-c-"),
        (r#"{"": "-"}, """#, "-"),
        (r#"{"": ""}, "abc""#, "abc"),
        (r#"{"": "-", "b": "X"}, "abc""#, "-a-X-c-"),
        (r#"{"": "-", "a": "X"}, "aba""#, "-X-b-X-"),
        (r#"{"": "-", "a": ""}, "aab""#, "---b-"),
        (r#"{"": "-", "ab": "E"}, "aab""#, "-a-E-"),
        (r#"{"é": "e", "": "_"}, "héé""#, "_h_e_e_"),
        (r#"{"": "-", "é": "E"}, "é""#, "-E-"),
    ];
    for (args, want) in cases {
        assert_eq!(
            eval(&format!("strings.replace_n({args})")),
            json!(want),
            "{args}"
        );
    }
}

#[test]
fn replace_n_empty_key_splits_multibyte_characters_like_go() {
    // Go steps over the input byte by byte for an empty key, so it inserts
    // between the bytes of "é"; OPA serializes each stray byte as U+FFFD and
    // counts it as one character: "-\u{fffd}-\u{fffd}-", count 5.
    assert_eq!(
        eval(r#"strings.replace_n({"": "-"}, "é€😀")"#),
        json!("-\u{fffd}-\u{fffd}-\u{fffd}-\u{fffd}-\u{fffd}-\u{fffd}-\u{fffd}-\u{fffd}-\u{fffd}-")
    );
    assert_eq!(
        eval(r#"count(strings.replace_n({"": "-"}, "é"))"#),
        json!(5)
    );
    assert_eq!(
        eval(r#"strings.replace_n({"": "-", "x": "y"}, "éx")"#),
        json!("-\u{fffd}-\u{fffd}-y-")
    );
}

#[test]
fn sprintf_v_writes_empty_sets_as_set() {
    let cases = [
        ("set()", "set()"),
        ("[set()]", "[set()]"),
        (r#"{"k": set()}"#, r#"{"k": set()}"#),
        ("{set()}", "{set()}"),
        ("{1, set()}", "{1, set()}"),
        ("{set(): 1}", "{set(): 1}"),
        ("{[set()]}", "{[set()]}"),
        ("[{}, set(), []]", "[{}, set(), []]"),
        ("{{}}", "{{}}"),
        ("{}", "{}"),
        (r#"{"a", "b"}"#, r#"{"a", "b"}"#),
    ];
    for (arg, want) in cases {
        assert_eq!(
            eval(&format!("sprintf(\"%v\", [{arg}])")),
            json!(want),
            "{arg}"
        );
    }
    assert_eq!(eval(r#"sprintf("%s", [set()])"#), json!("set()"));
    assert_eq!(eval(r#"sprintf("%d %v", [1, set()])"#), json!("1 set()"));
}

#[test]
fn glob_match_empty_delimiters_mean_dot_and_null_means_none() {
    // (pattern, delimiters, string, OPA's answer)
    let cases = [
        (
            "/api/v2/exports/**",
            "[]",
            "/api/v2/exports/customers.csv",
            true,
        ),
        (
            "/api/v2/exports/**",
            "null",
            "/api/v2/exports/customers.csv",
            true,
        ),
        (
            "/api/v2/exports/*",
            "[]",
            "/api/v2/exports/customers.csv",
            false,
        ),
        (
            "/api/v2/exports/*",
            "null",
            "/api/v2/exports/customers.csv",
            true,
        ),
        ("/api/*", "[]", "/api/v2/exports", true),
        ("/api/*", "null", "/api/v2/exports", true),
        ("/api/*", r#"["/"]"#, "/api/v2/exports", false),
        ("*.com", "[]", "a.b.com", false),
        ("*.com", "null", "a.b.com", true),
        ("*.com", r#"["."]"#, "a.b.com", false),
        ("**.com", "[]", "a.b.com", true),
        ("*", "[]", "a.b", false),
        ("*", "null", "a.b", true),
        ("*", r#"["/"]"#, "a.b", true),
        ("a?c", "[]", "a.c", false),
        ("a?c", "null", "a.c", true),
        ("*", "[]", "a/b", true),
        ("*", r#"["/"]"#, "a/b", false),
        ("*", r#"[".", "/"]"#, "a:b", true),
        ("*", r#"[":"]"#, "a:b", false),
        ("*", r#"[":"]"#, "a/b", true),
        ("*", r#"["é"]"#, "aéb", false),
    ];
    for (pattern, delimiters, s, want) in cases {
        let expr = format!("glob.match({pattern:?}, {delimiters}, {s:?})");
        assert_eq!(eval(&expr), json!(want), "{expr}");
    }
}

#[test]
fn glob_match_follows_gobwas_glob_syntax() {
    // (pattern, delimiters, string, OPA's answer)
    let cases = [
        // `**` crosses delimiters anywhere, not only as a path component.
        ("a**b", "[]", "a.b", true),
        ("a*b", "[]", "a.b", false),
        ("***", "[]", "a.b", true),
        // Character classes match delimiters too.
        ("a[.]c", "[]", "a.c", true),
        ("[!a-z]", "[]", ".", true),
        ("[a-z]", "[]", ".", false),
        ("[!.]", "[]", ".", false),
        ("?", "[]", ".", false),
        ("[ab-c]", "[]", "b", true),
        ("[-a]", "[]", "a", true),
        ("[\\]]", "[]", "]", true),
        ("[!!]", "[]", "a", true),
        // Alternatives: nestable; `,` and `}` are text outside braces; an
        // unclosed `{` runs to the end.
        ("{a,b}", "[]", "a", true),
        ("{a,{b,c}}", "[]", "c", true),
        ("{,a}", "[]", "", true),
        ("{}", "[]", "", true),
        ("{a", "[]", "a", true),
        ("a}", "[]", "a}", true),
        ("a,b", "[]", "a,b", true),
        ("{a\\,b}", "[]", "a,b", true),
        ("{*,b}", "[]", "x.y", false),
        ("{**,b}", "[]", "x.y", true),
        // Escapes; a trailing backslash is dropped.
        ("\\*", "[]", "*", true),
        ("\\a", "[]", "a", true),
        ("a\\", "[]", "a", true),
        ("a\\", "[]", "a\\", false),
        ("]", "[]", "]", true),
        ("", "[]", "", true),
        ("", "null", "a", false),
        ("*", "[]", "", true),
        ("**", "[]", "", true),
        ("é", "[]", "é", true),
        (
            "/api/v1/customers/{[0-9],[0-9][0-9]}",
            r#"["/"]"#,
            "/api/v1/customers/42",
            true,
        ),
        (
            "/api/v1/customers/{[0-9],[0-9][0-9]}",
            r#"["/"]"#,
            "/api/v1/customers/420",
            false,
        ),
    ];
    for (pattern, delimiters, s, want) in cases {
        let expr = format!("glob.match({pattern:?}, {delimiters}, {s:?})");
        assert_eq!(eval(&expr), json!(want), "{expr}");
    }
}

#[test]
fn glob_match_errors_like_opa() {
    // OPA errors on each of these (e.g. "unexpected end of input", "could not
    // parse range", "operand 2 must be array of runes").
    let cases = [
        json!(["[", [], "["]),
        json!(["[]", [], "]"]),
        json!(["[z-a]", [], "b"]),
        json!(["[!]", [], "!"]),
        json!(["[a-]", [], "a"]),
        json!(["*", [""], "a"]),
        json!(["*", ["ab"], "a"]),
        json!(["*", [1], "a"]),
        json!(["a", "x", "a"]),
    ];
    let ok = eval_with(
        "glob.match(input.c[0], input.c[1], input.c[2])",
        json!({ "c": ["a*", [], "ab"] }),
    );
    assert_eq!(ok, Ok(json!(true)));
    for c in cases {
        let r = eval_with(
            "glob.match(input.c[0], input.c[1], input.c[2])",
            json!({ "c": c }),
        );
        assert!(r.is_err(), "{c}: {r:?}");
    }
}

#[test]
fn glob_quote_meta_escapes_gobwas_specials() {
    // OPA: glob.quote_meta("a*b?c[d]{e}\\f,g!h-i.j/k") = "a\\*b\\?c\\[d\\]\\{e\\}\\\\f,g!h-i.j/k"
    assert_eq!(
        eval(r#"glob.quote_meta("a*b?c[d]{e}\\f,g!h-i.j/k")"#),
        json!(r"a\*b\?c\[d\]\{e\}\\f,g!h-i.j/k")
    );
    // Not a valid glob, quoted anyway: "\\[".
    assert_eq!(eval(r#"glob.quote_meta("[")"#), json!(r"\["));
    assert_eq!(
        eval(
            r#"glob.match(glob.quote_meta("/api/v1/orders?limit=500"), ["/"], "/api/v1/ordersXlimit=500")"#
        ),
        json!(false)
    );
    assert_eq!(
        eval(r#"glob.match(glob.quote_meta("/a/[x]{b,c}*"), ["/"], "/a/[x]{b,c}*")"#),
        json!(true)
    );
}

#[test]
fn decoders_keep_one_character_per_invalid_byte_as_go_does() {
    // OPA: count(hex.decode("ec8a")) = 2 (a cut-off 3-byte sequence: two
    // invalid bytes), and the same through base64 and base64url;
    // hex.decode("ec8a41") = "\ufffd\ufffdA".
    assert_eq!(eval(r#"count(hex.decode("ec8a"))"#), json!(2));
    assert_eq!(eval(r#"count(base64.decode("7Io="))"#), json!(2));
    assert_eq!(eval(r#"count(base64url.decode("7Io"))"#), json!(2));
    assert_eq!(eval(r#"hex.decode("ec8a41")"#), json!("\u{fffd}\u{fffd}A"));
}

#[test]
fn count_counts_characters_as_opa_does() {
    // OPA: count("😀é") = 2, count("a😀") = 2 (runes, not UTF-16 units), and
    // count(hex.decode("c7f9f38399bc9ae2")) = 5 (four invalid bytes and
    // one four-byte character).
    assert_eq!(eval(r#"count("😀é")"#), json!(2));
    assert_eq!(eval(r#"count("a😀")"#), json!(2));
    assert_eq!(eval(r#"count(hex.decode("c7f9f38399bc9ae2"))"#), json!(5));
}

#[test]
fn strings_count_as_go_counts_and_never_panics() {
    // OPA: [4, 2, 6, 1]. Upstream regorus counted "aaaa"/"aa" as 3 and
    // panicked on an empty substring, which would abort the filter's VM.
    assert_eq!(
        eval(
            r#"[strings.count("abc", ""), strings.count("aaaa", "aa"), strings.count("héllo", ""), strings.count("", "")]"#
        ),
        json!([4, 2, 6, 1])
    );
    // From the request, as a policy would.
    assert_eq!(
        eval_with(
            "strings.count(input.s, input.sub)",
            json!({"s": "abc", "sub": ""})
        ),
        Ok(json!(4))
    );
}

#[test]
fn object_subset_of_an_empty_array_is_true_and_never_panics() {
    // OPA: [true, true, true, true, false]. Upstream regorus panicked on an
    // empty array (`windows(0)`), which would abort the filter's VM.
    assert_eq!(
        eval(
            r#"[object.subset([1, 2], []), object.subset([], []), object.subset({"a": [1, 2]}, {"a": []}), object.subset([1, 2, 3], [2, 3]), object.subset([1, 2, 3], [1, 3])]"#
        ),
        json!([true, true, true, true, false])
    );
}

#[test]
fn glob_patterns_nested_too_deep_are_errors_not_stack_overflows() {
    // A pattern can come from a request; the matcher recurses per nested
    // `{`. 64 levels match as in OPA; deeper is an error (OPA has no bound).
    let ok = format!("{}a{}", "{".repeat(64), "}".repeat(64));
    assert_eq!(
        eval_with("glob.match(input.p, [], \"a\")", json!({"p": ok})),
        Ok(json!(true))
    );
    let deep = format!("{}a{}", "{".repeat(100_000), "}".repeat(100_000));
    let r = eval_with("glob.match(input.p, [], \"a\")", json!({"p": deep}));
    assert!(
        r.as_ref()
            .is_err_and(|e| e.contains("nested deeper than 64")),
        "{r:?}"
    );
}
