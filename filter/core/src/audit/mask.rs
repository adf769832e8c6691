//! Keeping secrets out of audit records: credential headers are erased,
//! secret query values are masked, and configured pointers are erased. The
//! record lists what was done in OPA's `erased` and `masked` fields.

use super::config::AuditConfig;
use serde_json::Value;

/// What masking did, as OPA's decision log lists it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Masked {
    /// Pointers (`/input/...`) whose values were removed.
    pub erased: Vec<String>,
    /// Pointers whose values were rewritten.
    pub masked: Vec<String>,
}

/// Value written in place of a secret query value.
pub const MASK: &str = "REDACTED";

/// Header names holding any of these are erased, whatever the config says:
/// credentials travel under many names (`x-auth-token`,
/// `x-amzn-oidc-accesstoken`, `x-goog-iap-jwt-assertion`, ...).
pub const SECRET_HEADER_WORDS: [&str; 12] = [
    "auth",
    "token",
    "secret",
    "session",
    "cookie",
    "password",
    "passwd",
    "credential",
    "jwt",
    "signature",
    "key",
    "assertion",
];

fn secret_header(name: &str, config: &AuditConfig) -> bool {
    let name = name.to_ascii_lowercase();
    // Pseudo-headers (`:authority`, `:path`) are never credentials.
    config.erased_headers.contains(&name)
        || (!name.starts_with(':') && SECRET_HEADER_WORDS.iter().any(|w| name.contains(w)))
}

/// Masks `input` (the policy input document) in place.
pub fn mask_input(input: &mut Value, config: &AuditConfig) -> Masked {
    let mut out = Masked::default();
    if let Some(headers) = input
        .pointer_mut("/attributes/request/http/headers")
        .and_then(Value::as_object_mut)
    {
        let names: Vec<String> = headers.keys().cloned().collect();
        for name in names {
            let pointer = format!("/input/attributes/request/http/headers/{}", escape(&name));
            if secret_header(&name, config) {
                headers.remove(&name);
                out.erased.push(pointer);
            } else if let Some(Value::String(v)) = headers.get_mut(&name) {
                // `:path`, `referer`, ...: any URL's secret query values.
                if let Some(clean) = mask_query(v, config) {
                    *v = clean;
                    out.masked.push(pointer);
                }
            }
        }
    }
    if let Some(Value::String(p)) = input.pointer_mut("/attributes/request/http/path") {
        if let Some(clean) = mask_query(p, config) {
            *p = clean;
            out.masked
                .push("/input/attributes/request/http/path".into());
        }
    }
    if let Some(query) = input.get_mut("parsed_query").and_then(Value::as_object_mut) {
        let names: Vec<String> = query.keys().cloned().collect();
        for name in names {
            if is_secret(&name, config) {
                query.remove(&name);
                out.erased
                    .push(format!("/input/parsed_query/{}", escape(&name)));
            }
        }
    }
    for pointer in &config.erased_paths {
        let Some(rel) = pointer.strip_prefix("/input") else {
            continue;
        };
        if remove_pointer(input, rel) {
            out.erased.push(pointer.clone());
        }
    }
    scrub_jwts(input, "/input", &mut out.masked);
    out
}

/// Masks the policy's `result`: configured `/result/...` pointers are
/// erased, and token-shaped strings masked (a policy may echo a header).
pub fn mask_result(result: &mut Value, config: &AuditConfig) -> Masked {
    let mut out = Masked::default();
    // Headers a policy sets (OPA-Envoy's result fields) may carry
    // credentials for the upstream.
    for field in [
        "headers",
        "request_headers_to_add",
        "response_headers_to_add",
    ] {
        if let Some(map) = result.get_mut(field).and_then(Value::as_object_mut) {
            let names: Vec<String> = map.keys().cloned().collect();
            for name in names {
                if secret_header(&name, config) {
                    map.remove(&name);
                    out.erased
                        .push(format!("/result/{field}/{}", escape(&name)));
                }
            }
        }
    }
    for pointer in &config.erased_paths {
        if let Some(rel) = pointer.strip_prefix("/result") {
            if remove_pointer(result, rel) {
                out.erased.push(pointer.clone());
            }
        }
    }
    scrub_jwts(result, "/result", &mut out.masked);
    out
}

/// Replaces every JWT-shaped run (`eyJ…​.…​.…`) inside strings under `value`
/// with [`MASK`], noting where.
fn scrub_jwts(value: &mut Value, at: &str, masked: &mut Vec<String>) {
    // Most records hold none: look first, without allocating.
    if !mentions_jwt(value) {
        return;
    }
    match value {
        Value::String(s) => {
            if let Some(clean) = without_jwts(s) {
                *s = clean;
                masked.push(at.to_owned());
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                scrub_jwts(item, &format!("{at}/{i}"), masked);
            }
        }
        Value::Object(obj) => {
            for (k, v) in obj.iter_mut() {
                scrub_jwts(v, &format!("{at}/{}", escape(k)), masked);
            }
        }
        _ => {}
    }
}

/// True if any string under `value` could hold a token.
fn mentions_jwt(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains("eyJ"),
        Value::Array(items) => items.iter().any(mentions_jwt),
        Value::Object(obj) => obj.values().any(mentions_jwt),
        _ => false,
    }
}

/// `s` with JWT-shaped runs masked, or `None` if it holds none.
pub fn without_jwts(s: &str) -> Option<String> {
    if !s.contains("eyJ") {
        return None;
    }
    let b64 = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '=';
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    let mut changed = false;
    while let Some(at) = rest.find("eyJ") {
        out.push_str(&rest[..at]);
        let run = &rest[at..];
        let len = run
            .char_indices()
            .find(|(_, c)| !(b64(*c) || *c == '.'))
            .map_or(run.len(), |(i, _)| i);
        let token = &run[..len];
        if token.matches('.').count() >= 2 && len >= 20 {
            out.push_str(MASK);
            changed = true;
        } else {
            out.push_str(token);
        }
        rest = &run[len..];
        if len == 0 {
            break;
        }
    }
    out.push_str(rest);
    changed.then_some(out)
}

/// The request path with secret query values replaced by [`MASK`], or
/// `None` if nothing needed masking.
pub fn mask_query(path: &str, config: &AuditConfig) -> Option<String> {
    let (base, query) = path.split_once('?')?;
    let mut changed = false;
    let parts: Vec<String> = query
        .split('&')
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            if is_secret(name, config) && !value.is_empty() {
                changed = true;
                format!("{name}={MASK}")
            } else {
                pair.to_owned()
            }
        })
        .collect();
    changed.then(|| format!("{base}?{}", parts.join("&")))
}

/// Query parameter names holding any of these are secret too
/// (`X-Amz-Security-Token`, `X-Amz-Signature`, `auth_token`, ...).
pub const SECRET_PARAM_WORDS: [&str; 11] = [
    "token",
    "secret",
    "passw",
    "signature",
    "credential",
    "assertion",
    "apikey",
    "api_key",
    "access_key",
    "private_key",
    "session",
];

/// A parameter name is secret if its decoded, lowercased form is listed
/// (`%74oken`, `TOKEN`, `token[]` and `token.x` are `token`), or holds one
/// of [`SECRET_PARAM_WORDS`].
fn is_secret(name: &str, config: &AuditConfig) -> bool {
    let decoded = crate::input::percent_decode(name, true).unwrap_or_else(|| name.to_owned());
    let base = decoded
        .split(['[', '.'])
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    config.secret_params.contains(&base) || SECRET_PARAM_WORDS.iter().any(|w| base.contains(w))
}

/// RFC 6901 escaping of one pointer step.
fn escape(step: &str) -> String {
    step.replace('~', "~0").replace('/', "~1")
}

/// Removes the value at `pointer` (relative to `value`); true if it existed.
fn remove_pointer(value: &mut Value, pointer: &str) -> bool {
    let Some((parent, last)) = pointer.rsplit_once('/') else {
        return false;
    };
    let last = last.replace("~1", "/").replace("~0", "~");
    match value.pointer_mut(parent) {
        Some(Value::Object(obj)) => obj.remove(&last).is_some(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config() -> AuditConfig {
        let raw: crate::config::raw::RawAudit = serde_json::from_value(json!({
            "mask": {"query_params": ["ssn"], "paths": ["/input/token/payload/email"], "headers": ["x-session"]}
        }))
        .unwrap();
        AuditConfig::compile(Some(&raw), &["x-jwt".into()]).unwrap()
    }

    #[test]
    fn credentials_and_secrets_never_stay_in_the_input() {
        let mut input = json!({
            "attributes": {"request": {"http": {
                "path": "/api/v1/customers?limit=5&access_token=eyJabc&%73sn=123-45&q=ok",
                "headers": {
                    "authorization": "Bearer eyJabc", "Cookie": "s=1", "x-jwt": "eyJdef",
                    "x-session": "abc", ":path": "/api/v1/customers?token=eyJabc", "accept": "*/*"
                }
            }}},
            "parsed_query": {"limit": ["5"], "access_token": ["eyJabc"], "%73sn": ["123-45"], "q": ["ok"]},
            "token": {"payload": {"sub": "alice", "email": "alice@example.com"}}
        });
        let m = mask_input(&mut input, &config());
        let text = input.to_string();
        for secret in ["eyJ", "s=1", "abc\"", "123-45", "alice@example.com"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert_eq!(
            input["attributes"]["request"]["http"]["path"],
            "/api/v1/customers?limit=5&access_token=REDACTED&%73sn=REDACTED&q=ok"
        );
        assert_eq!(
            input["attributes"]["request"]["http"]["headers"]["accept"],
            "*/*"
        );
        assert_eq!(input["parsed_query"]["q"], json!(["ok"]));
        assert_eq!(input["token"]["payload"]["sub"], "alice");
        assert!(m
            .erased
            .contains(&"/input/attributes/request/http/headers/authorization".to_owned()));
        assert!(m.erased.contains(&"/input/token/payload/email".to_owned()));
        assert!(m
            .masked
            .contains(&"/input/attributes/request/http/path".to_owned()));
    }

    #[test]
    fn credential_headers_by_any_name_and_tokens_anywhere_are_kept_out() {
        let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl";
        let mut input = json!({
            "attributes": {"request": {"http": {"path": "/x?token[]=abc", "headers": {
                "x-amzn-oidc-accesstoken": "t1", "x-auth-token": "t2", "x-goog-iap-jwt-assertion": "t3",
                "referer": "https://app/?access_token=t4&page=2", "x-forwarded-jwt": "t5",
                "x-note": format!("see {jwt} here"), "accept": "*/*"
            }}}},
            "parsed_query": {"token[]": ["abc"]}
        });
        let m = mask_input(&mut input, &config());
        let text = input.to_string();
        for secret in ["t1", "t2", "t3", "t4", "t5", jwt, "abc"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert_eq!(
            input["attributes"]["request"]["http"]["headers"]["x-note"],
            "see REDACTED here"
        );
        assert_eq!(
            input["attributes"]["request"]["http"]["headers"]["referer"],
            "https://app/?access_token=REDACTED&page=2"
        );
        assert!(m
            .masked
            .contains(&"/input/attributes/request/http/headers/x-note".to_owned()));
        let mut result = json!({"allowed": true, "headers": {"x-echo": jwt, "authorization": "Basic dXNlcjpwdw==", "x-role": "reader"}});
        let r = mask_result(&mut result, &config());
        assert_eq!(result["headers"]["x-echo"], "REDACTED");
        assert_eq!(r.masked, ["/result/headers/x-echo"]);
        assert_eq!(r.erased, ["/result/headers/authorization"]);
        assert_eq!(result["headers"]["x-role"], "reader");
        let aws = "/s3/x?X-Amz-Credential=AKIA&X-Amz-Signature=abc&X-Amz-Security-Token=t&code=oauth&page=1";
        assert_eq!(
            mask_query(aws, &config()).unwrap(),
            "/s3/x?X-Amz-Credential=REDACTED&X-Amz-Signature=REDACTED&X-Amz-Security-Token=REDACTED&code=REDACTED&page=1"
        );
        assert_eq!(without_jwts("eyJ not a token"), None);
    }

    #[test]
    fn paths_without_secrets_are_untouched() {
        assert_eq!(mask_query("/a?limit=5&x=", &config()), None);
        assert_eq!(mask_query("/a", &config()), None);
        assert_eq!(mask_query("/a?token=", &config()), None, "nothing to hide");
    }
}
