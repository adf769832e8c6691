//! The request facts the glue hands to the core, as raw bytes.
//!
//! Header values stay bytes: Envoy may pass non-UTF-8 values, and the core
//! decides how each use treats them (tokens must be ASCII; the policy input
//! replaces invalid sequences with U+FFFD).

/// Request headers in arrival order, names lowercased. Pseudo-headers
/// (`:method`, `:path`, `:authority`, `:scheme`) are included as Envoy gives them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    entries: Vec<(String, Vec<u8>)>,
}

impl Headers {
    /// Builds from raw pairs; names are lowercased, invalid UTF-8 in names is replaced.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>) -> Self {
        Headers {
            entries: pairs
                .into_iter()
                .map(|(k, v)| (String::from_utf8_lossy(&k).to_ascii_lowercase(), v))
                .collect(),
        }
    }

    /// All `(name, value)` entries whose name equals `name` (which must be lowercase).
    pub fn get_all<'a, 'n>(
        &'a self,
        name: &'n str,
    ) -> impl Iterator<Item = (&'a str, &'a [u8])> + use<'a, 'n> {
        self.entries
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    /// The first value of `name`, if any.
    pub fn first(&self, name: &str) -> Option<&[u8]> {
        self.get_all(name).next().map(|(_, v)| v)
    }

    /// Removes every entry whose (lowercase) name satisfies `drop`; returns
    /// the distinct names removed, in order.
    pub fn remove_where(&mut self, drop: impl Fn(&str) -> bool) -> Vec<String> {
        let mut removed: Vec<String> = Vec::new();
        self.entries.retain(|(k, _)| {
            let gone = drop(k);
            if gone && !removed.contains(k) {
                removed.push(k.clone());
            }
            !gone
        });
        removed
    }

    /// Appends a header (`name` lowercase).
    pub fn push(&mut self, name: &str, value: &[u8]) {
        self.entries.push((name.to_owned(), value.to_vec()));
    }

    /// The first value of `name` as text (lossy; empty if absent).
    pub fn text(&self, name: &str) -> String {
        self.first(name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }
}

/// Everything the core needs to decide on one request.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub headers: Headers,
    /// `request.id` from Envoy (falls back to the `x-request-id` header).
    pub id: Option<String>,
    /// `request.protocol`, e.g. `HTTP/1.1`, `HTTP/2`.
    pub protocol: Option<String>,
    /// The downstream peer (`source.address`), as `ip:port`.
    pub source_address: Option<String>,
    /// The listener address (`destination.address`), as `ip:port`.
    pub destination_address: Option<String>,
    /// The mTLS peer's URI SAN (`connection.uri_san_peer_certificate`), e.g. a SPIFFE ID.
    pub source_principal: Option<String>,
    /// The start of the request body, when the config asks for bodies
    /// (`request_body`) and the request has one.
    pub body: Option<Body>,
}

/// At most `request_body.max_bytes` of a request body: only that much is
/// ever read from the host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Body {
    pub bytes: Vec<u8>,
    /// More followed than was read.
    pub truncated: bool,
}
