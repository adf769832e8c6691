use super::*;
use crate::request::{Headers, Request};
use serde_json::json;

fn request(path: &str, extra: &[(&[u8], &[u8])]) -> Request {
    let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = vec![
        (b":method".to_vec(), b"GET".to_vec()),
        (b":path".to_vec(), path.as_bytes().to_vec()),
        (b":authority".to_vec(), b"api.internal".to_vec()),
        (b":scheme".to_vec(), b"https".to_vec()),
    ];
    pairs.extend(extra.iter().map(|(k, v)| (k.to_vec(), v.to_vec())));
    Request {
        headers: Headers::from_pairs(pairs),
        id: Some("req-1".into()),
        protocol: Some("HTTP/1.1".into()),
        source_address: Some("10.1.2.3:51234".into()),
        destination_address: Some("[::1]:10000".into()),
        source_principal: Some("spiffe://corp/ns/default/sa/export".into()),
        body: None,
    }
}

fn with_body(content_type: &[u8], bytes: &[u8], truncated: bool) -> serde_json::Value {
    let mut r = request("/", &[(b"content-type", content_type)]);
    r.body = Some(crate::request::Body {
        bytes: bytes.to_vec(),
        truncated,
    });
    json_of(&build(&r, None, None))
}

#[test]
fn a_json_body_is_given_parsed_as_opa_envoy_does() {
    let input = with_body(
        b"application/json; charset=utf-8",
        br#"{"amount": 42}"#,
        false,
    );
    assert_eq!(input["parsed_body"], json!({"amount": 42}));
    assert_eq!(input["truncated_body"], false);
    assert_eq!(
        input["attributes"]["request"]["http"]["body"],
        r#"{"amount": 42}"#
    );
    let vendor = with_body(b"application/vnd.api+json", b"[1]", false);
    assert_eq!(vendor["parsed_body"], json!([1]));
}

#[test]
fn a_body_that_cannot_be_parsed_whole_is_given_unparsed() {
    // Truncated: half a document would mislead the policy.
    let cut = with_body(b"application/json", br#"{"amount": 4"#, true);
    assert_eq!(cut["truncated_body"], true);
    assert!(cut.get("parsed_body").is_none());
    // Not JSON by its type, or not JSON at all.
    assert!(with_body(b"text/plain", b"{}", false)
        .get("parsed_body")
        .is_none());
    assert!(with_body(b"application/json", b"{nope", false)
        .get("parsed_body")
        .is_none());
    // Nested deeper than serde_json's limit: refused, not a stack overflow.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let input = with_body(b"application/json", deep.as_bytes(), false);
    assert!(input.get("parsed_body").is_none());
    // Not UTF-8: the raw body is replaced, never a crash.
    let odd = with_body(b"application/octet-stream", b"\xff\xfe", false);
    assert_eq!(
        odd["attributes"]["request"]["http"]["body"],
        "\u{fffd}\u{fffd}"
    );
}

fn json_of(v: &Value) -> serde_json::Value {
    serde_json::from_str(&v.to_json_str().unwrap()).unwrap()
}

#[test]
fn has_the_opa_envoy_shape() {
    let input = json_of(&build(
        &request(
            "/api/v1/customers?limit=10&tag=a&tag=b",
            &[(b"X-Team", b"data")],
        ),
        None,
        None,
    ));
    let http = &input["attributes"]["request"]["http"];
    assert_eq!(http["method"], "GET");
    assert_eq!(http["path"], "/api/v1/customers?limit=10&tag=a&tag=b");
    assert_eq!(http["host"], "api.internal");
    assert_eq!(http["scheme"], "https");
    assert_eq!(http["protocol"], "HTTP/1.1");
    assert_eq!(http["id"], "req-1");
    assert_eq!(http["headers"]["x-team"], "data");
    assert_eq!(
        input["attributes"]["source"]["address"]["socketAddress"],
        json!({"address": "10.1.2.3", "portValue": 51234})
    );
    assert_eq!(
        input["attributes"]["source"]["principal"],
        "spiffe://corp/ns/default/sa/export"
    );
    assert_eq!(
        input["attributes"]["destination"]["address"]["socketAddress"],
        json!({"address": "::1", "portValue": 10000})
    );
    assert_eq!(input["parsed_path"], json!(["api", "v1", "customers"]));
    assert_eq!(
        input["parsed_query"],
        json!({"limit": ["10"], "tag": ["a", "b"]})
    );
    assert_eq!(
        input["version"],
        json!({"encoding": "protojson", "ext_authz": "v3"})
    );
    assert!(input.get("token").is_none());
    assert!(input.get("usage").is_none());
}

#[test]
fn usage_is_given_to_the_policy() {
    let usage = Value::from(serde_json::json!({"bulk": {"identity": "sub=alice"}}));
    let input = json_of(&build(&request("/", &[]), None, Some(usage)));
    assert_eq!(input["usage"]["bulk"]["identity"], "sub=alice");
}

#[test]
fn the_hosts_time_is_given_to_the_policy() {
    let now = std::time::Duration::new(1_700_000_000, 5);
    let input = json_of(&build_at(&request("/", &[]), None, None, Some(now)));
    assert_eq!(input["time"]["now_ns"], 1_700_000_000_000_000_005u64);
    assert!(json_of(&build(&request("/", &[]), None, None))
        .get("time")
        .is_none());
}

#[test]
fn repeated_headers_are_joined_and_non_utf8_is_replaced() {
    let r = request(
        "/",
        &[(b"x-a", b"1"), (b"x-a", b"2"), (b"x-bin", b"\xff\xfeok")],
    );
    let input = json_of(&build(&r, None, None));
    let headers = &input["attributes"]["request"]["http"]["headers"];
    assert_eq!(headers["x-a"], "1,2");
    assert_eq!(headers["x-bin"], "\u{fffd}\u{fffd}ok");
}

#[test]
fn parsed_path_follows_opa_envoy() {
    let cases = [
        ("/", json!([""])),
        ("/api/v1/", json!(["api", "v1", ""])),
        ("//api", json!(["api"])),
        ("/a%20b/c", json!(["a b", "c"])),
        ("/bad%zz", json!(["bad%zz"])),
    ];
    for (path, expected) in cases {
        assert_eq!(
            json_of(&build(&request(path, &[]), None, None))["parsed_path"],
            expected,
            "{path}"
        );
    }
}

#[test]
fn parsed_query_follows_go_parse_query() {
    let input = json_of(&build(
        &request("/x?a=1+2&b=%41&c&&d=%zz&e=", &[]),
        None,
        None,
    ));
    assert_eq!(
        input["parsed_query"],
        json!({"a": ["1 2"], "b": ["A"], "c": [""], "e": [""]})
    );
}

#[test]
fn percent_decode_rejects_bad_escapes() {
    assert_eq!(percent_decode("%41", false).as_deref(), Some("A"));
    assert_eq!(percent_decode("%+1", false), None);
    assert_eq!(percent_decode("%4", false), None);
    assert_eq!(percent_decode("a+b", false).as_deref(), Some("a+b"));
}

#[test]
fn missing_connection_facts_are_simply_absent() {
    let mut r = request("/", &[]);
    r.source_address = None;
    r.source_principal = None;
    r.id = None;
    let input = json_of(&build(&r, None, None));
    assert_eq!(input["attributes"]["source"], json!({}));
    assert!(input["attributes"]["request"]["http"].get("id").is_none());
}
