//! Client-sent identity and trust headers are not facts. Before anything
//! reads the request, headers a client could use to claim an identity or a
//! trusted path (`x-palisade-*`, configured prefixes such as `x-user-`,
//! `x-forwarded-*` behind an untrusted edge) and method-override headers
//! are removed: the policy never sees them and the upstream never gets them.
//! On allow, the verified identity is set in headers the client cannot forge.
//!
//! A request that reads two ways is refused (400) before any of that: a
//! path that is not canonical ([`crate::canonical_path`]), a
//! security-relevant header sent twice or with disagreeing values, a
//! method override that disagrees with the method.

use crate::canonical_path;
use crate::config::raw::RawRequestHeaders;
use crate::request::Request;
use crate::token::verify::VerifiedToken;
use serde_json::Value;

/// Headers that must carry one value: a second copy, or a list whose
/// values disagree, means two parsers may pick different ones. (Token
/// headers are checked by the token extractor: `token_multiple`.)
pub const SINGLE_VALUED_HEADERS: [&str; 4] =
    ["content-type", "content-length", "host", "x-request-id"];

/// Headers that ask a server to treat a request as another method.
pub const METHOD_OVERRIDE_HEADERS: [&str; 3] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverrideMode {
    /// Remove them.
    Remove,
    /// Refuse the request (400) when one disagrees with the method; remove
    /// one that agrees.
    Reject,
}

/// The compiled `request_headers` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderPolicy {
    strip_prefixes: Vec<String>,
    untrusted_edge: bool,
    method_override: OverrideMode,
    /// (header, claim) pairs set on allow.
    identity: Vec<(String, String)>,
    /// `;` path parameters are let through.
    allow_path_parameters: bool,
    /// Headers refused when sent twice or with disagreeing values.
    single_valued: Vec<String>,
}

/// What [`HeaderPolicy::scrub`] did to the request: the glue does the same
/// to what goes upstream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scrubbed {
    /// Header names removed.
    pub removed: Vec<String>,
    /// Headers set in their place.
    pub set: Vec<(String, String)>,
}

/// A request that cannot be taken as sent (400): a stable reason code and
/// a message safe to show the client (it names no header value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    pub reason: &'static str,
    pub message: String,
}

impl HeaderPolicy {
    /// Compiles the section; errors name the field.
    pub fn compile(raw: Option<&RawRequestHeaders>) -> Result<HeaderPolicy, String> {
        let default = RawRequestHeaders::default();
        let raw = raw.unwrap_or(&default);
        let mut strip_prefixes = vec!["x-palisade-".to_owned()];
        for (i, p) in raw.strip_prefixes.iter().enumerate() {
            if p.is_empty()
                || !p
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(format!(
                    "request_headers.strip_prefixes[{i}]: `{p}` is not a header name prefix"
                ));
            }
            strip_prefixes.push(p.to_ascii_lowercase());
        }
        let method_override = match raw.method_override.as_deref() {
            None | Some("remove") => OverrideMode::Remove,
            Some("reject") => OverrideMode::Reject,
            Some(other) => {
                return Err(format!(
                    "request_headers.method_override: `{other}` is not `remove` or `reject`"
                ))
            }
        };
        let identity = match &raw.identity {
            None => vec![("x-palisade-subject".to_owned(), "sub".to_owned())],
            Some(map) => {
                let mut out = Vec::new();
                for (header, claim) in map {
                    let h = header.to_ascii_lowercase();
                    if h.is_empty() || h.starts_with(':') || claim.is_empty() {
                        return Err(format!(
                            "request_headers.identity.{header}: needs a header name and a claim"
                        ));
                    }
                    out.push((h, claim.clone()));
                }
                out
            }
        };
        let allow_path_parameters = match raw.path_parameters.as_deref() {
            None | Some("reject") => false,
            Some("allow") => true,
            Some(other) => {
                return Err(format!(
                    "request_headers.path_parameters: `{other}` is not `reject` or `allow`"
                ))
            }
        };
        let mut single_valued: Vec<String> = SINGLE_VALUED_HEADERS
            .iter()
            .map(|h| (*h).to_owned())
            .collect();
        for (i, h) in raw.single_valued.iter().enumerate() {
            let h = h.to_ascii_lowercase();
            if h.is_empty() || h.starts_with(':') {
                return Err(format!(
                    "request_headers.single_valued[{i}]: `{h}` is not a header name"
                ));
            }
            if !single_valued.contains(&h) {
                single_valued.push(h);
            }
        }
        Ok(HeaderPolicy {
            strip_prefixes,
            untrusted_edge: raw.untrusted_edge,
            method_override,
            identity,
            allow_path_parameters,
            single_valued,
        })
    }

    /// Refuses a request that reads two ways, then removes the headers a
    /// client may not set; returns their names (for the glue to remove from
    /// what goes upstream).
    pub fn scrub(&self, request: &mut Request) -> Result<Scrubbed, Malformed> {
        let path = request.headers.first(":path").unwrap_or_default();
        let method = request.headers.first(":method").unwrap_or_default();
        if let Err(problem) = canonical_path::check(path, method, self.allow_path_parameters) {
            return Err(Malformed {
                reason: problem.reason(),
                message: problem.message().to_owned(),
            });
        }
        if self.method_override == OverrideMode::Reject {
            let method = request.headers.text(":method");
            for name in METHOD_OVERRIDE_HEADERS {
                for (_, value) in request.headers.get_all(name) {
                    if !String::from_utf8_lossy(value)
                        .trim()
                        .eq_ignore_ascii_case(&method)
                    {
                        return Err(Malformed {
                            reason: "method_override_mismatch",
                            message: format!("{name} disagrees with the request method {method}"),
                        });
                    }
                }
            }
        }
        for name in &self.single_valued {
            if let Some(message) = ambiguous(request, name) {
                return Err(Malformed {
                    reason: "ambiguous_header",
                    message,
                });
            }
        }
        // Identity headers are set from the token only: a client's copy goes.
        let identity: Vec<&str> = self.identity.iter().map(|(h, _)| h.as_str()).collect();
        let removed = request.headers.remove_where(|name| {
            self.strip_prefixes
                .iter()
                .any(|p| name.starts_with(p.as_str()))
                || METHOD_OVERRIDE_HEADERS.contains(&name)
                || identity.contains(&name)
                || (self.untrusted_edge
                    && (name.starts_with("x-forwarded-") || name == "forwarded"))
        });
        // Envoy routes on `x-forwarded-proto`: a client's goes, and the
        // scheme the request really came with takes its place.
        let mut set = Vec::new();
        let scheme = request.headers.text(":scheme");
        if removed.iter().any(|n| n == "x-forwarded-proto") && !scheme.is_empty() {
            request.headers.push("x-forwarded-proto", scheme.as_bytes());
            set.push(("x-forwarded-proto".to_owned(), scheme));
        }
        Ok(Scrubbed { removed, set })
    }

    /// The identity headers for an allowed request: each configured claim
    /// of the verified token that is a string or a number.
    pub fn identity_headers(&self, token: Option<&VerifiedToken>) -> Vec<(String, String)> {
        let Some(token) = token else {
            return Vec::new();
        };
        self.identity
            .iter()
            .filter_map(|(header, claim)| {
                let value = match token.payload.get(claim)? {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    _ => return None,
                };
                // A value that cannot travel as a header is left out.
                let safe = value
                    .bytes()
                    .all(|b| b == b'\t' || (0x20..0x7f).contains(&b));
                safe.then(|| (header.clone(), value))
            })
            .collect()
    }
}

/// Why `name` is ambiguous in `request`, if it is: sent more than once, or
/// one value that lists disagreeing values (`a, b`).
fn ambiguous(request: &Request, name: &str) -> Option<String> {
    let mut values = request.headers.get_all(name).map(|(_, v)| v);
    let first = values.next()?;
    if values.next().is_some() {
        return Some(format!("{name} is sent more than once"));
    }
    let mut items = first.split(|&b| b == b',').map(<[u8]>::trim_ascii);
    let one = items.next().unwrap_or_default();
    if items.any(|other| other != one) {
        return Some(format!("{name} lists disagreeing values"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::Headers;

    fn request(extra: &[(&str, &str)]) -> Request {
        let mut pairs = vec![
            (b":method".to_vec(), b"GET".to_vec()),
            (b":path".to_vec(), b"/x".to_vec()),
        ];
        pairs.extend(
            extra
                .iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec())),
        );
        Request {
            headers: Headers::from_pairs(pairs),
            ..Request::default()
        }
    }

    fn policy(json: serde_json::Value) -> HeaderPolicy {
        let raw: RawRequestHeaders = serde_json::from_value(json).unwrap();
        HeaderPolicy::compile(Some(&raw)).unwrap()
    }

    #[test]
    fn identity_and_trust_headers_from_the_client_are_removed() {
        let p = policy(
            serde_json::json!({"strip_prefixes": ["x-user-", "X-JWT-"], "untrusted_edge": true}),
        );
        let mut r = request(&[
            ("x-palisade-subject", "admin"),
            ("X-User-Id", "42"),
            ("x-jwt-claims", "{}"),
            ("x-forwarded-for", "10.0.0.1"),
            ("forwarded", "for=10.0.0.1"),
            ("x-http-method-override", "DELETE"),
            ("accept", "*/*"),
        ]);
        let removed = p.scrub(&mut r).unwrap().removed;
        assert_eq!(
            removed,
            [
                "x-palisade-subject",
                "x-user-id",
                "x-jwt-claims",
                "x-forwarded-for",
                "forwarded",
                "x-http-method-override"
            ]
        );
        assert_eq!(r.headers.text("accept"), "*/*");
        let trusted = HeaderPolicy::compile(None).unwrap();
        let mut r = request(&[("x-forwarded-for", "10.0.0.1")]);
        assert!(
            trusted.scrub(&mut r).unwrap().removed.is_empty(),
            "a trusted edge's x-forwarded-* stays"
        );
        // A client's scheme claim is replaced by the real one.
        let mut r = request(&[(":scheme", "http"), ("x-forwarded-proto", "https")]);
        let s = p.scrub(&mut r).unwrap();
        assert_eq!(s.set, [("x-forwarded-proto".to_owned(), "http".to_owned())]);
        assert_eq!(r.headers.text("x-forwarded-proto"), "http");
    }

    #[test]
    fn a_disagreeing_override_is_refused_in_reject_mode() {
        let p = policy(serde_json::json!({"method_override": "reject"}));
        let mut r = request(&[("X-HTTP-Method-Override", "delete")]);
        let refused = p.scrub(&mut r).unwrap_err();
        assert_eq!(refused.reason, "method_override_mismatch");
        assert_eq!(
            refused.message,
            "x-http-method-override disagrees with the request method GET"
        );
        let mut same = request(&[("x-http-method", "get")]);
        assert_eq!(
            p.scrub(&mut same).unwrap().removed,
            ["x-http-method"],
            "an agreeing one is removed"
        );
    }

    #[test]
    fn paths_that_read_two_ways_are_refused_before_anything_else() {
        let p = HeaderPolicy::compile(None).unwrap();
        let mut r = request(&[]);
        r.headers = Headers::from_pairs([
            (b":method".to_vec(), b"GET".to_vec()),
            (b":path".to_vec(), b"/api/v1/customers/..%2Fadmin".to_vec()),
            (b"x-palisade-subject".to_vec(), b"admin".to_vec()),
        ]);
        let refused = p.scrub(&mut r).unwrap_err();
        assert_eq!(refused.reason, "path_encoded_slash");
        let mut semi = request(&[]);
        semi.headers.remove_where(|n| n == ":path");
        semi.headers.push(":path", b"/a;v=1");
        assert_eq!(
            p.scrub(&mut semi.clone()).unwrap_err().reason,
            "path_parameter"
        );
        let allowing = policy(serde_json::json!({"path_parameters": "allow"}));
        assert!(allowing.scrub(&mut semi).is_ok());
    }

    #[test]
    fn security_headers_sent_twice_or_disagreeing_are_refused() {
        let p = policy(serde_json::json!({"single_valued": ["X-Tenant"]}));
        for extra in [
            &[
                ("content-type", "application/json"),
                ("content-type", "text/plain"),
            ][..],
            &[("x-tenant", "a"), ("x-tenant", "a")],
            &[("x-tenant", "a, b")],
            &[("content-length", "5,6")],
        ] {
            let refused = p.scrub(&mut request(extra)).unwrap_err();
            assert_eq!(refused.reason, "ambiguous_header", "{extra:?}");
        }
        for fine in [
            &[("x-tenant", "a")][..],
            &[("content-length", "5, 5")],
            &[("accept", "a"), ("accept", "b")],
        ] {
            assert!(p.scrub(&mut request(fine)).is_ok(), "{fine:?}");
        }
    }

    #[test]
    fn bad_settings_name_their_field() {
        let bad = |j| {
            HeaderPolicy::compile(Some(
                &serde_json::from_value::<RawRequestHeaders>(j).unwrap(),
            ))
            .unwrap_err()
        };
        assert!(bad(serde_json::json!({"method_override": "allow"}))
            .starts_with("request_headers.method_override"));
        assert!(bad(serde_json::json!({"strip_prefixes": ["x user"]}))
            .starts_with("request_headers.strip_prefixes[0]"));
        assert!(bad(serde_json::json!({"identity": {":path": "sub"}}))
            .starts_with("request_headers.identity"));
        assert!(bad(serde_json::json!({"path_parameters": "strip"}))
            .starts_with("request_headers.path_parameters"));
        assert!(bad(serde_json::json!({"single_valued": [":path"]}))
            .starts_with("request_headers.single_valued[0]"));
    }
}
