//! Routing and request bookkeeping, independent of any socket.
//!
//! `App::handle` maps a plain [`RequestInfo`] to a [`Reply`] so that the
//! whole API contract can be unit-tested without a server; `server.rs` only
//! translates between `tiny_http` and these types.
//!
//! The API deliberately trusts its caller (e.g. a `limit` of up to 100000):
//! it stands in for a backend that relies on the Palisade gate in front of
//! it, and the `/__demo/*` endpoints let end-to-end tests see exactly which
//! requests got through that gate.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde::Serialize;
use serde_json::{json, Value};

use crate::data::Dataset;

/// Page size used when the caller gives no `limit`.
pub const DEFAULT_LIMIT: usize = 50;

/// Largest `limit` the demo accepts. High on purpose: limiting bulk reads is
/// the gate's job, and e2e tests check that the gate does it.
pub const MAX_LIMIT: usize = 100_000;

/// Prefix of the test-support endpoints, which are never counted as hits so
/// that inspecting the counters does not change them.
const DEMO_PREFIX: &str = "/__demo";

/// What the router needs from an HTTP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestInfo {
    /// Method as sent, e.g. `GET`.
    pub method: String,
    /// Request target: path plus optional `?query`.
    pub url: String,
    /// Headers in arrival order, names as sent.
    pub headers: Vec<(String, String)>,
}

/// How a reply's body is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON document (`application/json`).
    Json,
    /// The body is an array, written one element per line
    /// (`application/x-ndjson`), as bulk exports often are.
    Ndjson,
}

/// A response. Every reply of this API is JSON (or NDJSON), errors included.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub format: Format,
    /// Value for an `allow` header; set on 405 replies as HTTP requires.
    pub allow: Option<&'static str>,
    /// Value for `x-record-count`: how many records this reply holds.
    pub record_count: Option<usize>,
}

impl Reply {
    fn ok(body: Value) -> Self {
        Self {
            status: 200,
            body,
            format: Format::Json,
            allow: None,
            record_count: None,
        }
    }

    fn error(status: u16, message: &str) -> Self {
        Self {
            body: json!({ "error": message }),
            status,
            ..Self::ok(Value::Null)
        }
    }

    /// The body as sent on the wire.
    pub fn body_bytes(&self) -> Vec<u8> {
        match (self.format, &self.body) {
            (Format::Ndjson, Value::Array(lines)) => {
                let mut out = Vec::new();
                for line in lines {
                    out.extend(line.to_string().into_bytes());
                    out.push(b'\n');
                }
                out
            }
            _ => self.body.to_string().into_bytes(),
        }
    }

    /// The `content-type` of the body.
    pub fn content_type(&self) -> &'static str {
        match self.format {
            Format::Json => "application/json",
            Format::Ndjson => "application/x-ndjson",
        }
    }

    fn not_found() -> Self {
        Self::error(404, "not found")
    }

    fn method_not_allowed(allow: &'static str) -> Self {
        Self {
            allow: Some(allow),
            ..Self::error(405, "method not allowed")
        }
    }
}

/// The last counted request, as reported by `GET /__demo/last`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct LastRequest {
    method: String,
    path: String,
    headers: BTreeMap<String, String>,
}

/// Hit counters shared by all worker threads.
#[derive(Debug, Default)]
struct Hits {
    total: u64,
    by_path: BTreeMap<String, u64>,
    last: Option<LastRequest>,
}

/// The API: immutable data plus the shared hit counters.
#[derive(Debug)]
pub struct App {
    data: Dataset,
    hits: Mutex<Hits>,
}

impl App {
    pub fn new(data: Dataset) -> Self {
        Self {
            data,
            hits: Mutex::new(Hits::default()),
        }
    }

    /// Routes one request. Every request outside `/__demo/*` is counted
    /// first — whatever its status — since tests want to know what reached
    /// the backend, not what succeeded.
    pub fn handle(&self, req: &RequestInfo) -> Reply {
        let (path, query) = match req.url.split_once('?') {
            Some((path, query)) => (path, query),
            None => (req.url.as_str(), ""),
        };
        let is_demo = path == DEMO_PREFIX || path.starts_with("/__demo/");
        if !is_demo {
            self.record(req, path);
        }
        let get = req.method == "GET";
        match path {
            "/health" if get => Reply::ok(json!({ "status": "ok" })),
            "/api/v1/customers" if get => self.list_customers(query),
            "/api/v1/orders" if get => self.list_orders(query),
            "/api/v1/exports/customers" if get => self.export_customers(query),
            "/__demo/hits" if get => self.hits_report(),
            "/__demo/last" if get => self.last_report(),
            "/__demo/reset" if req.method == "POST" => self.reset(),
            "/health"
            | "/api/v1/customers"
            | "/api/v1/orders"
            | "/api/v1/exports/customers"
            | "/__demo/hits"
            | "/__demo/last" => Reply::method_not_allowed("GET"),
            "/__demo/reset" => Reply::method_not_allowed("POST"),
            _ => match path.strip_prefix("/api/v1/customers/") {
                Some(id) if !id.contains('/') => match req.method.as_str() {
                    "GET" => self.one_customer(id),
                    // An erasure request (admins, under the reference
                    // policy): accepted, nothing is really deleted.
                    "DELETE" => Reply::ok(json!({"id": id, "erasure": "scheduled"})),
                    _ => Reply::method_not_allowed("GET, DELETE"),
                },
                _ => Reply::not_found(),
            },
        }
    }

    fn list_customers(&self, query: &str) -> Reply {
        let limit = match number_param(query, "limit", DEFAULT_LIMIT, MAX_LIMIT) {
            Ok(limit) => limit,
            Err(reply) => return reply,
        };
        let offset = match number_param(query, "offset", 0, usize::MAX) {
            Ok(offset) => offset,
            Err(reply) => return reply,
        };
        Reply::ok(json!({
            "items": self.data.customers_page(offset, limit),
            "total": self.data.customer_total(),
            "offset": offset,
            "limit": limit,
        }))
    }

    /// A page of customers as NDJSON, one record per line.
    fn export_customers(&self, query: &str) -> Reply {
        match self.list_customers(query) {
            Reply {
                status: 200, body, ..
            } => Reply {
                format: Format::Ndjson,
                ..Reply::ok(body["items"].clone())
            },
            error => error,
        }
    }

    fn one_customer(&self, id: &str) -> Reply {
        match self.data.customer(id) {
            Some(customer) => Reply::ok(json!(customer)),
            None => Reply::not_found(),
        }
    }

    fn list_orders(&self, query: &str) -> Reply {
        match number_param(query, "limit", DEFAULT_LIMIT, MAX_LIMIT) {
            Ok(limit) => {
                let items = self.data.orders(limit);
                Reply {
                    record_count: Some(items.len()),
                    ..Reply::ok(json!({ "items": items }))
                }
            }
            Err(reply) => reply,
        }
    }

    fn hits_report(&self) -> Reply {
        let hits = self.lock();
        Reply::ok(json!({ "total": hits.total, "by_path": hits.by_path }))
    }

    fn last_report(&self) -> Reply {
        Reply::ok(json!(self.lock().last))
    }

    /// Clears the counters and the last request, so each test starts from
    /// a known state without restarting the server.
    fn reset(&self) -> Reply {
        *self.lock() = Hits::default();
        Reply::ok(json!({ "ok": true }))
    }

    fn record(&self, req: &RequestInfo, path: &str) {
        let mut headers: BTreeMap<String, String> = BTreeMap::new();
        for (name, value) in &req.headers {
            headers
                .entry(name.to_ascii_lowercase())
                .and_modify(|joined| {
                    joined.push(',');
                    joined.push_str(value);
                })
                .or_insert_with(|| value.clone());
        }
        let mut hits = self.lock();
        hits.total = hits.total.saturating_add(1);
        let count = hits.by_path.entry(path.to_string()).or_insert(0);
        *count = count.saturating_add(1);
        hits.last = Some(LastRequest {
            method: req.method.clone(),
            path: req.url.clone(),
            headers,
        });
    }

    /// Locks the counters. A worker can't panic while holding the lock (the
    /// critical sections are plain map updates), but if one ever did the
    /// counters are still consistent enough for a demo, so poisoning is
    /// ignored instead of taking every other worker down.
    /// Requests counted so far (everything outside `/__demo/*`).
    pub fn hits_total(&self) -> u64 {
        self.lock().total
    }

    /// The last counted request as `/__demo/last` reports it (`null` if none).
    pub fn last_request(&self) -> Value {
        json!(self.lock().last)
    }

    fn lock(&self) -> MutexGuard<'_, Hits> {
        self.hits.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Reads a non-negative integer query parameter. Absent → `default`;
/// present but not plain decimal digits, or above `max` → a 400 reply
/// naming the parameter. The first occurrence wins if it is repeated.
fn number_param(query: &str, name: &str, default: usize, max: usize) -> Result<usize, Reply> {
    let raw = query
        .split('&')
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value);
    let Some(raw) = raw else {
        return Ok(default);
    };
    let parsed = if !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit()) {
        raw.parse::<usize>().ok().filter(|n| *n <= max)
    } else {
        None
    };
    parsed.ok_or_else(|| {
        let message = if max == usize::MAX {
            format!("invalid {name}: expected a non-negative integer")
        } else {
            format!("invalid {name}: expected an integer from 0 to {max}")
        };
        Reply::error(400, &message)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> App {
        App::new(Dataset::generate())
    }

    fn req(method: &str, url: &str) -> RequestInfo {
        RequestInfo {
            method: method.to_string(),
            url: url.to_string(),
            headers: Vec::new(),
        }
    }

    fn get(app: &App, url: &str) -> Reply {
        app.handle(&req("GET", url))
    }

    #[test]
    fn health() {
        let r = get(&app(), "/health");
        assert_eq!(r.status, 200);
        assert_eq!(r.body, json!({ "status": "ok" }));
    }

    #[test]
    fn customers_default_page() {
        let r = get(&app(), "/api/v1/customers");
        assert_eq!(r.status, 200);
        assert_eq!(r.body["total"], 1000);
        assert_eq!(r.body["offset"], 0);
        assert_eq!(r.body["limit"], 50);
        let items = r.body["items"].as_array().unwrap();
        assert_eq!(items.len(), 50);
        assert_eq!(items[0]["id"], "1");
        assert_eq!(items[49]["id"], "50");
    }

    #[test]
    fn exports_are_ndjson_one_record_per_line() {
        let r = get(&app(), "/api/v1/exports/customers?limit=3&offset=1");
        assert_eq!((r.status, r.content_type()), (200, "application/x-ndjson"));
        let text = String::from_utf8(r.body_bytes()).unwrap();
        let ids: Vec<String> = text
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()["id"].to_string())
            .collect();
        assert_eq!(ids, ["\"2\"", "\"3\"", "\"4\""]);
        assert!(text.ends_with('\n'));
        let bad = get(&app(), "/api/v1/exports/customers?limit=x");
        assert_eq!((bad.status, bad.content_type()), (400, "application/json"));
    }

    #[test]
    fn orders_report_their_record_count() {
        let r = get(&app(), "/api/v1/orders?limit=7");
        assert_eq!(r.record_count, Some(7));
        assert_eq!(r.body["items"].as_array().unwrap().len(), 7);
    }

    #[test]
    fn customers_limit_and_offset() {
        let app = app();
        let r = get(&app, "/api/v1/customers?limit=5&offset=10");
        assert_eq!(r.status, 200);
        assert_eq!(r.body["limit"], 5);
        assert_eq!(r.body["offset"], 10);
        let ids: Vec<&str> = r.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["11", "12", "13", "14", "15"]);

        // The demo trusts the caller: a huge limit returns everything.
        let all = get(&app, "/api/v1/customers?limit=100000");
        assert_eq!(all.status, 200);
        assert_eq!(all.body["items"].as_array().unwrap().len(), 1000);

        let past_end = get(&app, "/api/v1/customers?offset=5000");
        assert_eq!(past_end.status, 200);
        assert_eq!(past_end.body["items"], json!([]));
        assert_eq!(past_end.body["total"], 1000);
    }

    #[test]
    fn invalid_numbers_are_400_json() {
        let app = app();
        for url in [
            "/api/v1/customers?limit=abc",
            "/api/v1/customers?limit=-1",
            "/api/v1/customers?limit=",
            "/api/v1/customers?limit",
            "/api/v1/customers?limit=100001",
            "/api/v1/customers?offset=1.5",
            "/api/v1/customers?offset=99999999999999999999999",
            "/api/v1/orders?limit=x",
        ] {
            let r = get(&app, url);
            assert_eq!(r.status, 400, "{url}");
            assert!(r.body["error"].as_str().unwrap().starts_with("invalid "));
        }
    }

    #[test]
    fn one_customer() {
        let app = app();
        let r = get(&app, "/api/v1/customers/42");
        assert_eq!(r.status, 200);
        assert_eq!(r.body["id"], "42");
        assert_eq!(r.body["name"], "Customer 42");
        assert_eq!(r.body["email"], "customer42@example.test");
        assert!(r.body["city"].is_string());

        for url in [
            "/api/v1/customers/0",
            "/api/v1/customers/1001",
            "/api/v1/customers/abc",
            "/api/v1/customers/",
            "/api/v1/customers/42/orders",
        ] {
            let r = get(&app, url);
            assert_eq!(r.status, 404, "{url}");
            assert_eq!(r.body, json!({ "error": "not found" }));
        }
    }

    #[test]
    fn orders() {
        let r = get(&app(), "/api/v1/orders?limit=3");
        assert_eq!(r.status, 200);
        let items = r.body["items"].as_array().unwrap();
        assert_eq!(items.len(), 3);
        for item in items {
            assert!(item["id"].is_string());
            assert!(item["customer_id"].is_string());
            assert!(item["total_cents"].is_u64());
        }
        let default = get(&app(), "/api/v1/orders");
        assert_eq!(default.body["items"].as_array().unwrap().len(), 50);
    }

    #[test]
    fn unknown_paths_are_404_and_wrong_methods_405() {
        let app = app();
        for url in ["/", "/api", "/api/v1/customer", "/__demo/nope", "/healthz"] {
            assert_eq!(get(&app, url).status, 404, "{url}");
        }
        for (method, url) in [
            ("POST", "/health"),
            ("PUT", "/api/v1/customers/42"),
            ("PUT", "/api/v1/customers"),
            ("POST", "/api/v1/orders"),
            ("HEAD", "/health"),
            ("POST", "/__demo/hits"),
            ("GET", "/__demo/reset"),
        ] {
            let r = app.handle(&req(method, url));
            assert_eq!(r.status, 405, "{method} {url}");
            assert_eq!(r.body, json!({ "error": "method not allowed" }));
            assert!(r.allow.is_some());
        }
    }

    #[test]
    fn hits_count_everything_but_demo_endpoints() {
        let app = app();
        get(&app, "/api/v1/customers/42?x=1");
        get(&app, "/api/v1/customers/42");
        get(&app, "/nope");
        app.handle(&req("POST", "/health"));
        get(&app, "/__demo/hits");
        get(&app, "/__demo/last");
        let r = get(&app, "/__demo/hits");
        assert_eq!(
            r.body,
            json!({
                "total": 4,
                "by_path": { "/api/v1/customers/42": 2, "/nope": 1, "/health": 1 },
            })
        );

        let reset = app.handle(&req("POST", "/__demo/reset"));
        assert_eq!(reset.body, json!({ "ok": true }));
        assert_eq!(
            get(&app, "/__demo/hits").body,
            json!({ "total": 0, "by_path": {} })
        );
        assert_eq!(get(&app, "/__demo/last").body, Value::Null);
    }

    #[test]
    fn last_request_keeps_query_and_joins_repeated_headers() {
        let app = app();
        assert_eq!(get(&app, "/__demo/last").body, Value::Null);
        app.handle(&RequestInfo {
            method: "GET".to_string(),
            url: "/api/v1/customers?limit=2".to_string(),
            headers: vec![
                ("Authorization".to_string(), "Bearer t".to_string()),
                ("X-Tag".to_string(), "a".to_string()),
                ("x-tag".to_string(), "b".to_string()),
            ],
        });
        get(&app, "/__demo/hits");
        assert_eq!(
            get(&app, "/__demo/last").body,
            json!({
                "method": "GET",
                "path": "/api/v1/customers?limit=2",
                "headers": { "authorization": "Bearer t", "x-tag": "a,b" },
            })
        );
    }
}
