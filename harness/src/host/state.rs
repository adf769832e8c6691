//! What the host keeps per VM (in the wasmtime `Store`, never in globals) and
//! what VMs share (shared data, metrics), like Envoy's worker VMs do.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use wasmtime_wasi::p1::WasiP1Ctx;

/// Raw header pairs; names compared case-insensitively.
pub type HeaderPairs = Vec<(Vec<u8>, Vec<u8>)>;

/// The host's wall clock, injectable so tests can move time.
pub trait Clock: Send + Sync {
    /// Time since the Unix epoch.
    fn now(&self) -> Duration;
}

/// The real wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        // The harness is the host: reading the real clock is its job.
        #[allow(clippy::disallowed_methods)]
        let now = std::time::SystemTime::now();
        now.duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
    }
}

/// A clock tests set and advance by hand.
#[derive(Debug, Default)]
pub struct FakeClock(Mutex<Duration>);

impl FakeClock {
    pub fn at(since_epoch: Duration) -> Arc<FakeClock> {
        Arc::new(FakeClock(Mutex::new(since_epoch)))
    }
    pub fn set(&self, to: Duration) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = to;
    }
    pub fn advance(&self, by: Duration) {
        let mut now = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        *now = now.saturating_add(by);
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Duration {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Shared data and metrics: one space for all VMs of a "process", with
/// Envoy's compare-and-swap semantics.
#[derive(Debug, Default)]
pub struct SharedSpace {
    data: Mutex<SharedData>,
    metrics: Mutex<Vec<Metric>>,
}

#[derive(Debug, Default)]
struct SharedData {
    entries: BTreeMap<String, (Vec<u8>, u32)>,
    next_cas: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metric {
    pub name: String,
    pub kind: u32,
    pub value: i64,
}

/// Outcome of a shared-data write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetResult {
    Ok,
    CasMismatch,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SharedSpace {
    pub fn new() -> Arc<SharedSpace> {
        Arc::new(SharedSpace::default())
    }

    /// The value and its CAS token.
    pub fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        lock(&self.data).entries.get(key).cloned()
    }

    /// Writes `value`; a non-zero `cas` must match the current token.
    pub fn set(&self, key: &str, value: Vec<u8>, cas: u32) -> SetResult {
        let mut d = lock(&self.data);
        // Envoy checks the token only against an existing key: a write to a
        // missing key always succeeds, whatever token it carries.
        if cas != 0 && d.entries.get(key).is_some_and(|(_, c)| *c != cas) {
            return SetResult::CasMismatch;
        }
        d.next_cas = d.next_cas.wrapping_add(1).max(1);
        let token = d.next_cas;
        d.entries.insert(key.to_owned(), (value, token));
        SetResult::Ok
    }

    pub fn keys(&self) -> Vec<String> {
        lock(&self.data).entries.keys().cloned().collect()
    }

    /// Defines (or finds) a metric by name; returns its id.
    pub fn define_metric(&self, kind: u32, name: &str) -> u32 {
        let mut m = lock(&self.metrics);
        if let Some(i) = m.iter().position(|x| x.name == name) {
            return i as u32;
        }
        m.push(Metric {
            name: name.to_owned(),
            kind,
            value: 0,
        });
        (m.len() - 1) as u32
    }

    /// Applies `f` to metric `id`; false if there is no such metric.
    pub fn update_metric(&self, id: u32, f: impl FnOnce(&mut Metric)) -> bool {
        match lock(&self.metrics).get_mut(id as usize) {
            Some(metric) => {
                f(metric);
                true
            }
            None => false,
        }
    }

    pub fn metric(&self, id: u32) -> Option<Metric> {
        lock(&self.metrics).get(id as usize).cloned()
    }

    pub fn metrics(&self) -> Vec<Metric> {
        lock(&self.metrics).clone()
    }
}

/// A log line the guest wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub level: u32,
    pub message: String,
}

/// A reply the guest generated instead of the upstream's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    pub status: u16,
    pub headers: HeaderPairs,
    pub body: Vec<u8>,
    pub details: String,
}

/// An outgoing `proxy_http_call`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCall {
    pub token: u32,
    pub upstream: String,
    pub headers: HeaderPairs,
    pub body: Vec<u8>,
    pub timeout_ms: u32,
}

/// Maps and buffers of the HTTP stream being processed.
#[derive(Debug, Default, Clone)]
pub struct StreamState {
    pub request_headers: HeaderPairs,
    pub request_trailers: HeaderPairs,
    pub request_body: Vec<u8>,
    pub response_headers: HeaderPairs,
    pub response_trailers: HeaderPairs,
    pub response_body: Vec<u8>,
    pub local_reply: Option<LocalReply>,
    /// Connection and request properties (`source.address`, ...), by dotted path.
    pub properties: BTreeMap<String, Vec<u8>>,
}

/// Everything one VM's host functions see.
pub struct HostState {
    pub wasi: WasiP1Ctx,
    pub plugin_config: Vec<u8>,
    pub vm_config: Vec<u8>,
    pub clock: Arc<dyn Clock>,
    pub shared: Arc<SharedSpace>,
    pub stream: StreamState,
    pub logs: Vec<LogLine>,
    /// proxy-wasm log level; lines below it are dropped (default: trace, keep all).
    pub log_level: u32,
    pub tick_period_ms: u32,
    pub effective_context: u32,
    pub http_calls: Vec<HttpCall>,
    pub next_call_token: u32,
    /// Headers, body and trailers of the http call response being delivered.
    pub call_response: Option<(HeaderPairs, Vec<u8>, HeaderPairs)>,
}

impl HostState {
    pub fn new(
        plugin_config: Vec<u8>,
        clock: Arc<dyn Clock>,
        shared: Arc<SharedSpace>,
    ) -> HostState {
        HostState {
            wasi: wasmtime_wasi::WasiCtxBuilder::new().build_p1(),
            plugin_config,
            vm_config: Vec::new(),
            clock,
            shared,
            stream: StreamState::default(),
            logs: Vec::new(),
            log_level: 0,
            tick_period_ms: 0,
            effective_context: 0,
            http_calls: Vec::new(),
            next_call_token: 1,
            call_response: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_and_swap_follows_envoy() {
        let s = SharedSpace::new();
        assert_eq!(s.get("k"), None);
        assert_eq!(s.set("k", b"1".to_vec(), 0), SetResult::Ok);
        let (v, cas) = s.get("k").unwrap();
        assert_eq!(v, b"1");
        assert_eq!(s.set("k", b"2".to_vec(), cas), SetResult::Ok);
        assert_eq!(
            s.set("k", b"3".to_vec(), cas),
            SetResult::CasMismatch,
            "stale token"
        );
        assert_eq!(s.get("k").unwrap().0, b"2");
        assert_eq!(
            s.set("new", b"x".to_vec(), 7),
            SetResult::Ok,
            "as in Envoy, a write to a missing key succeeds whatever its token"
        );
    }

    #[test]
    fn fake_clock_moves_only_when_told() {
        let c = FakeClock::at(Duration::from_secs(10));
        assert_eq!(c.now(), Duration::from_secs(10));
        c.advance(Duration::from_secs(5));
        assert_eq!(c.now(), Duration::from_secs(15));
        c.set(Duration::from_secs(1));
        assert_eq!(c.now(), Duration::from_secs(1));
    }

    #[test]
    fn metrics_are_shared_by_name() {
        let s = SharedSpace::new();
        let a = s.define_metric(0, "palisade.requests");
        let b = s.define_metric(0, "palisade.requests");
        assert_eq!(a, b);
        assert!(s.update_metric(a, |m| m.value += 2));
        assert_eq!(s.metric(b).unwrap().value, 2);
        assert!(!s.update_metric(99, |_| {}));
    }
}
