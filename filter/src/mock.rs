//! A recording mock of [`Host`] for native tests of the glue.
//!
//! Tests assert outcomes (the local reply, the headers the upstream would
//! see, the log lines), not the order of host calls.

use crate::host::{Host, LocalReply, LogLevel};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::Duration;

/// One dispatched HTTP call: cluster, headers, body.
pub type Call = (String, Vec<(String, String)>, Vec<u8>);

#[derive(Default)]
pub struct MockHost {
    pub request_headers: RefCell<Vec<(Vec<u8>, Vec<u8>)>>,
    pub response_headers: RefCell<Vec<(String, String)>>,
    /// The response body chunk being processed.
    pub response_chunk: RefCell<Vec<u8>>,
    /// The buffered request body; `request_body_reads` records each read's size.
    pub request_body: RefCell<Vec<u8>>,
    /// The body of the HTTP call being answered.
    pub call_response_body: RefCell<Vec<u8>>,
    pub request_body_reads: RefCell<Vec<usize>>,
    pub properties: BTreeMap<String, Vec<u8>>,
    pub now: Duration,
    pub reply: RefCell<Option<LocalReply>>,
    pub logs: RefCell<Vec<(LogLevel, String)>>,
    /// HTTP calls dispatched.
    pub calls: RefCell<Vec<Call>>,
    /// Refuse to dispatch (no such cluster).
    pub fail_dispatch: bool,
    /// The status the call being answered carries.
    pub call_status: std::cell::Cell<Option<u16>>,
    /// Headers of the HTTP call being answered.
    pub call_headers: RefCell<Vec<(String, Vec<u8>)>>,
    /// Counter totals and histogram samples, by metric name.
    pub counters: RefCell<BTreeMap<String, u64>>,
    pub histograms: RefCell<BTreeMap<String, Vec<u64>>>,
    /// gRPC calls dispatched: cluster and message.
    pub grpc_calls: RefCell<Vec<(String, Vec<u8>)>>,
    /// The message of the gRPC call being answered.
    pub grpc_answer: RefCell<Vec<u8>>,
    /// Refuse to start gRPC calls.
    pub fail_grpc: bool,
    /// Times the request and the response were resumed.
    pub resumed_requests: std::cell::Cell<u32>,
    pub resumed_responses: std::cell::Cell<u32>,
    /// Simulate host failures.
    pub fail_headers: bool,
    pub fail_clock: bool,
}

impl MockHost {
    /// A GET for `path` with the given extra headers, at `now`.
    pub fn get(path: &str, headers: &[(&str, &str)], now: Duration) -> Self {
        let mut h: Vec<(Vec<u8>, Vec<u8>)> = vec![
            (b":method".to_vec(), b"GET".to_vec()),
            (b":path".to_vec(), path.as_bytes().to_vec()),
            (b":authority".to_vec(), b"customers.internal".to_vec()),
            (b":scheme".to_vec(), b"http".to_vec()),
        ];
        h.extend(
            headers
                .iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec())),
        );
        MockHost {
            request_headers: RefCell::new(h),
            properties: BTreeMap::from([
                ("source.address".to_owned(), b"127.0.0.1:50000".to_vec()),
                ("request.id".to_owned(), b"req-1".to_vec()),
            ]),
            now,
            ..MockHost::default()
        }
    }

    /// The value the upstream would see for `name`, if any.
    pub fn upstream_header(&self, name: &str) -> Option<String> {
        self.request_headers
            .borrow()
            .iter()
            .find(|(k, _)| k == name.as_bytes())
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }

    /// The audit records of decisions logged so far (not chain resets).
    pub fn decision_lines(&self) -> Vec<serde_json::Value> {
        self.audit_lines()
            .into_iter()
            .filter(|r| r["event"] == "decision")
            .collect()
    }

    /// Every audit record logged so far.
    pub fn audit_lines(&self) -> Vec<serde_json::Value> {
        self.logs
            .borrow()
            .iter()
            .filter_map(|(_, l)| l.strip_prefix(crate::audit_log::PREFIX))
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Host for MockHost {
    fn dispatch(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        _timeout: Duration,
    ) -> Option<u32> {
        if self.fail_dispatch {
            return None;
        }
        let mut calls = self.calls.borrow_mut();
        calls.push((
            cluster.to_owned(),
            headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            body.to_vec(),
        ));
        u32::try_from(calls.len()).ok()
    }
    fn call_status(&self) -> Option<u16> {
        self.call_status.get()
    }
    fn dispatch_grpc(
        &self,
        cluster: &str,
        _service: &str,
        _method: &str,
        message: &[u8],
        _timeout: Duration,
    ) -> Option<u32> {
        if self.fail_grpc {
            return None;
        }
        let mut calls = self.grpc_calls.borrow_mut();
        calls.push((cluster.to_owned(), message.to_vec()));
        u32::try_from(calls.len()).ok().map(|n| 1_000 + n)
    }
    fn grpc_message(&self, size: usize) -> Option<Vec<u8>> {
        let answer = self.grpc_answer.borrow();
        answer.get(..size.min(answer.len())).map(<[u8]>::to_vec)
    }
    fn resume_request(&self) {
        self.resumed_requests.set(self.resumed_requests.get() + 1);
    }
    fn resume_response(&self) {
        self.resumed_responses.set(self.resumed_responses.get() + 1);
    }
    fn count(&self, name: &str, by: u64) {
        *self
            .counters
            .borrow_mut()
            .entry(name.to_owned())
            .or_default() += by;
    }
    fn record(&self, name: &str, value: u64) {
        self.histograms
            .borrow_mut()
            .entry(name.to_owned())
            .or_default()
            .push(value);
    }
    fn request_headers(&self) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
        if self.fail_headers {
            return None;
        }
        Some(self.request_headers.borrow().clone())
    }
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        self.properties.get(&path.join(".")).cloned()
    }
    fn now(&self) -> Option<Duration> {
        (!self.fail_clock).then_some(self.now)
    }
    fn add_request_header(&self, name: &str, value: &str) {
        self.request_headers
            .borrow_mut()
            .push((name.as_bytes().to_vec(), value.as_bytes().to_vec()));
    }
    fn remove_request_header(&self, name: &str) {
        self.request_headers
            .borrow_mut()
            .retain(|(k, _)| !k.eq_ignore_ascii_case(name.as_bytes()));
    }
    fn add_response_header(&self, name: &str, value: &str) {
        self.response_headers
            .borrow_mut()
            .push((name.to_owned(), value.to_owned()));
    }
    fn response_header(&self, name: &str) -> Option<Vec<u8>> {
        self.response_headers
            .borrow()
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_bytes().to_vec())
    }
    fn remove_response_header(&self, name: &str) {
        self.response_headers
            .borrow_mut()
            .retain(|(k, _)| !k.eq_ignore_ascii_case(name));
    }
    fn call_header(&self, name: &str) -> Option<Vec<u8>> {
        self.call_headers
            .borrow()
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }
    fn call_body(&self, size: usize) -> Option<Vec<u8>> {
        let body = self.call_response_body.borrow();
        body.get(..size.min(body.len())).map(<[u8]>::to_vec)
    }
    fn request_body(&self, size: usize) -> Option<Vec<u8>> {
        self.request_body_reads.borrow_mut().push(size);
        let body = self.request_body.borrow();
        body.get(..size.min(body.len())).map(<[u8]>::to_vec)
    }
    fn response_body(&self, size: usize) -> Option<Vec<u8>> {
        let chunk = self.response_chunk.borrow();
        chunk.get(..size.min(chunk.len())).map(<[u8]>::to_vec)
    }
    fn replace_response_body(&self, _size: usize, bytes: &[u8]) {
        *self.response_chunk.borrow_mut() = bytes.to_vec();
    }
    fn send_local_reply(&self, reply: &LocalReply) {
        *self.reply.borrow_mut() = Some(reply.clone());
    }
    fn log(&self, level: LogLevel, message: &str) {
        self.logs.borrow_mut().push((level, message.to_owned()));
    }
}

/// An RS256 token of the test issuer (`envoy/test-keys`) for `sub`, valid
/// for five minutes from `now`.
pub fn token(sub: &str, now: Duration) -> String {
    use palisade_core::algorithm::Alg;
    use palisade_core::mint::SigningKey;
    let key = SigningKey::from_pem(
        Alg::RS256,
        Some("test-rs256"),
        include_bytes!("../../envoy/test-keys/rs256.key.pem"),
    )
    .unwrap();
    let secs = now.as_secs();
    key.mint(
        &serde_json::json!({"iss": "https://idp.palisade.test", "aud": "customer-api",
        "sub": sub, "iat": secs, "exp": secs + 300}),
    )
    .unwrap()
}
