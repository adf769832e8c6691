//! Building the policy input in the shape OPA-Envoy gives its policies, so
//! that existing OPA-Envoy policies port unchanged.
//!
//! ```text
//! input.attributes.request.http.{id,method,path,host,scheme,protocol,headers}
//! input.attributes.source.address.socketAddress.{address,portValue}
//! input.attributes.source.principal          (mTLS URI SAN, when present)
//! input.attributes.destination.address.socketAddress.{address,portValue}
//! input.parsed_path    ["api", "v1", "customers"]
//! input.parsed_query   {"limit": ["10"]}
//! input.token          {provider, from_header, header, payload}  (verified tokens only)
//! input.usage          {<rate limit>: {identity, requests, records}}  (limits covering the request)
//! input.time           {now_ns}  (the host's clock: what OPA's `time.now_ns()` gives)
//! input.attributes.request.http.body, input.parsed_body, input.truncated_body
//!                      (with `request_body` configured and a body present, as OPA-Envoy)
//! input.version        {"encoding": "protojson", "ext_authz": "v3"}
//! ```
//!
//! The document is built as `regorus::Value` directly, never through JSON text.

use crate::request::Request;
use crate::token::verify::VerifiedToken;
use regorus::Value;
use std::collections::BTreeMap;

/// Builds `input` for one request; `usage` is the caller's standing against
/// the rate limits that cover this request (`input.usage`).
pub fn build(request: &Request, token: Option<&VerifiedToken>, usage: Option<Value>) -> Value {
    build_at(request, token, usage, None)
}

/// As [`build`], with `input.time.now_ns` from `now` (since the Unix
/// epoch, the host's clock). Palisade builds without regorus's `time.*`
/// builtins, so a policy reads the time here: for business hours, or how
/// long ago the user authenticated (`auth_time`).
pub fn build_at(
    request: &Request,
    token: Option<&VerifiedToken>,
    usage: Option<Value>,
    now: Option<std::time::Duration>,
) -> Value {
    let headers = &request.headers;
    let text = |name: &str| headers.first(name).map(lossy).unwrap_or_default();
    let path = text(":path");
    let (path_only, query) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path.as_str(), None),
    };

    let mut http = vec![
        ("method", Value::from(text(":method"))),
        ("path", Value::from(path.as_str())),
        ("host", Value::from(text(":authority"))),
        ("scheme", Value::from(text(":scheme"))),
        ("headers", header_map(request)),
    ];
    let id = request
        .id
        .clone()
        .or_else(|| headers.first("x-request-id").map(lossy));
    if let Some(id) = id {
        http.push(("id", Value::from(id)));
    }
    if let Some(protocol) = &request.protocol {
        http.push(("protocol", Value::from(protocol.as_str())));
    }
    if let Some(body) = &request.body {
        http.push(("body", Value::from(lossy(&body.bytes))));
    }

    let mut source = vec![];
    if let Some(addr) = request.source_address.as_deref().and_then(socket_address) {
        source.push(("address", addr));
    }
    if let Some(principal) = &request.source_principal {
        source.push(("principal", Value::from(principal.as_str())));
    }
    let mut destination = vec![];
    if let Some(addr) = request
        .destination_address
        .as_deref()
        .and_then(socket_address)
    {
        destination.push(("address", addr));
    }

    let mut input = vec![
        (
            "attributes",
            object(vec![
                ("request", object(vec![("http", object(http))])),
                ("source", object(source)),
                ("destination", object(destination)),
            ]),
        ),
        ("parsed_path", parsed_path(path_only)),
        ("parsed_query", parsed_query(query.unwrap_or(""))),
        (
            "version",
            object(vec![
                ("encoding", Value::from("protojson")),
                ("ext_authz", Value::from("v3")),
            ]),
        ),
    ];
    if let Some(body) = &request.body {
        input.push(("truncated_body", Value::from(body.truncated)));
        if let Some(parsed) = parsed_body(body, &text("content-type")) {
            input.push(("parsed_body", parsed));
        }
    }
    if let Some(token) = token {
        input.push(("token", token.document.clone()));
    }
    if let Some(usage) = usage {
        input.push(("usage", usage));
    }
    if let Some(now) = now {
        let ns = u64::try_from(now.as_nanos()).unwrap_or(u64::MAX);
        input.push(("time", object(vec![("now_ns", Value::from(ns))])));
    }
    object(input)
}

/// A whole JSON body (`application/json` or `…+json`), parsed; `None` for a
/// truncated body, another type, or JSON that does not parse (serde_json
/// refuses nesting deeper than 128, so a hostile body cannot exhaust the
/// stack).
fn parsed_body(body: &crate::request::Body, content_type: &str) -> Option<Value> {
    let media = content_type.split(';').next()?.trim().to_ascii_lowercase();
    let json = media == "application/json" || media.ends_with("+json");
    if body.truncated || !json {
        return None;
    }
    let value: serde_json::Value = serde_json::from_slice(&body.bytes).ok()?;
    Some(Value::from(value))
}

fn object(fields: Vec<(&str, Value)>) -> Value {
    Value::from(
        fields
            .into_iter()
            .map(|(k, v)| (Value::from(k), v))
            .collect::<BTreeMap<_, _>>(),
    )
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Header names lowercased; repeated headers joined with `,` as Envoy's
/// ext_authz does.
fn header_map(request: &Request) -> Value {
    let mut map: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in request.headers.iter() {
        let value = String::from_utf8_lossy(value);
        map.entry(name.to_owned())
            .and_modify(|v| {
                v.push(',');
                v.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    Value::from(
        map.into_iter()
            .map(|(k, v)| (Value::from(k), Value::from(v)))
            .collect::<BTreeMap<_, _>>(),
    )
}

/// `ip:port` or `[v6]:port` → `{"socketAddress": {"address", "portValue"}}`.
fn socket_address(addr: &str) -> Option<Value> {
    let (host, port) = addr.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u32 = port.parse().ok()?;
    Some(object(vec![(
        "socketAddress",
        object(vec![
            ("address", Value::from(host)),
            ("portValue", Value::from(port)),
        ]),
    )]))
}

/// OPA-Envoy's `parsed_path`: leading slashes trimmed, split on `/`, each
/// segment percent-decoded.
fn parsed_path(path: &str) -> Value {
    Value::from(
        path.trim_start_matches('/')
            .split('/')
            .map(|seg| Value::from(percent_decode(seg, false).unwrap_or_else(|| seg.to_owned())))
            .collect::<Vec<_>>(),
    )
}

/// OPA-Envoy's `parsed_query` (Go's `url.ParseQuery`): key → list of values,
/// `+` as space; pairs with invalid escapes are skipped.
fn parsed_query(query: &str) -> Value {
    let mut map: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if let (Some(k), Some(v)) = (percent_decode(k, true), percent_decode(v, true)) {
            map.entry(k).or_default().push(Value::from(v));
        }
    }
    Value::from(
        map.into_iter()
            .map(|(k, v)| (Value::from(k), Value::from(v)))
            .collect::<BTreeMap<_, _>>(),
    )
}

/// Decodes `%XX` escapes (and `+` when `plus_is_space`); `None` on a bad escape.
pub fn percent_decode(s: &str, plus_is_space: bool) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return None;
                }
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
#[path = "input_tests.rs"]
mod tests;
