//! proxy-wasm contexts and the hostcall-backed [`Host`].
//!
//! Hostcalls are made through `proxy_wasm::hostcalls`, whose errors are
//! `Result`s, rather than the SDK's trait helpers, which `unwrap` them: a
//! host error must become a log line and a closed door, never a VM panic.

use crate::audit_log::Trail;
use crate::host::{Flow, Host, LocalReply, LogLevel};
use crate::stream::{Loaded, Stream};
use palisade_core::audit::config::AuditConfig;
use palisade_core::config::Config;
use palisade_core::ratelimit::store::{CasMismatch, SharedStore};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, MapType, MetricType};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(PalisadeRoot { loaded: None }) });
}}

/// [`Host`] over the current stream's hostcalls.
struct ProxyWasmHost;

impl Host for ProxyWasmHost {
    fn request_headers(&self) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
        let pairs = raw::request_header_pairs().and_then(|bytes| crate::header_map::decode(&bytes));
        if pairs.is_none() {
            self.log(LogLevel::Error, "palisade: cannot read request headers");
        }
        pairs
    }

    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        hostcalls::get_property(path.to_vec()).ok().flatten()
    }

    fn now(&self) -> Option<Duration> {
        hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .filter(|d| !d.is_zero())
    }

    fn add_request_header(&self, name: &str, value: &str) {
        let _ = hostcalls::add_map_value(MapType::HttpRequestHeaders, name, value);
    }

    fn remove_request_header(&self, name: &str) {
        let _ = hostcalls::remove_map_value(MapType::HttpRequestHeaders, name);
    }

    fn add_response_header(&self, name: &str, value: &str) {
        let _ = hostcalls::add_map_value(MapType::HttpResponseHeaders, name, value);
    }

    fn response_header(&self, name: &str) -> Option<Vec<u8>> {
        hostcalls::get_map_value_bytes(MapType::HttpResponseHeaders, name)
            .ok()
            .flatten()
    }

    fn remove_response_header(&self, name: &str) {
        let _ = hostcalls::remove_map_value(MapType::HttpResponseHeaders, name);
    }

    fn request_body(&self, size: usize) -> Option<Vec<u8>> {
        match hostcalls::get_buffer(BufferType::HttpRequestBody, 0, size) {
            Ok(bytes) => Some(bytes.unwrap_or_default()),
            Err(_) => None,
        }
    }

    fn response_body(&self, size: usize) -> Option<Vec<u8>> {
        match hostcalls::get_buffer(BufferType::HttpResponseBody, 0, size) {
            Ok(bytes) => Some(bytes.unwrap_or_default()),
            Err(_) => None,
        }
    }

    fn replace_response_body(&self, size: usize, bytes: &[u8]) {
        let _ = hostcalls::set_buffer(BufferType::HttpResponseBody, 0, size, bytes);
    }

    fn send_local_reply(&self, reply: &LocalReply) {
        let headers: Vec<(&str, &str)> = reply
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        if let Err(status) = hostcalls::send_http_response(
            u32::from(reply.status),
            headers,
            Some(reply.body.as_bytes()),
        ) {
            self.log(
                LogLevel::Error,
                &format!("palisade: cannot send local reply: {status:?}"),
            );
        }
    }

    fn dispatch(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        timeout: Duration,
    ) -> Option<u32> {
        hostcalls::dispatch_http_call(cluster, headers.to_vec(), Some(body), Vec::new(), timeout)
            .ok()
    }

    fn dispatch_grpc(
        &self,
        cluster: &str,
        service: &str,
        method: &str,
        message: &[u8],
        timeout: Duration,
    ) -> Option<u32> {
        hostcalls::dispatch_grpc_call(cluster, service, method, Vec::new(), Some(message), timeout)
            .ok()
    }

    fn grpc_message(&self, size: usize) -> Option<Vec<u8>> {
        match hostcalls::get_buffer(BufferType::GrpcReceiveBuffer, 0, size) {
            Ok(bytes) => Some(bytes.unwrap_or_default()),
            Err(_) => None,
        }
    }

    fn resume_request(&self) {
        let _ = hostcalls::resume_http_request();
    }

    fn resume_response(&self) {
        let _ = hostcalls::resume_http_response();
    }

    fn call_status(&self) -> Option<u16> {
        hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, ":status")
            .ok()
            .flatten()
            .and_then(|v| String::from_utf8_lossy(&v).parse().ok())
    }

    fn call_body(&self, size: usize) -> Option<Vec<u8>> {
        match hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, size) {
            Ok(bytes) => Some(bytes.unwrap_or_default()),
            Err(_) => None,
        }
    }

    fn call_header(&self, name: &str) -> Option<Vec<u8>> {
        hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, name)
            .ok()
            .flatten()
    }

    fn count(&self, name: &str, by: u64) {
        if let Some(id) = metric_id(MetricType::Counter, name) {
            let _ = hostcalls::increment_metric(id, i64::try_from(by).unwrap_or(i64::MAX));
        }
    }

    fn record(&self, name: &str, value: u64) {
        if let Some(id) = metric_id(MetricType::Histogram, name) {
            let _ = hostcalls::record_metric(id, value);
        }
    }

    fn log(&self, level: LogLevel, message: &str) {
        let level = match level {
            LogLevel::Debug => proxy_wasm::types::LogLevel::Debug,
            LogLevel::Info => proxy_wasm::types::LogLevel::Info,
            LogLevel::Warn => proxy_wasm::types::LogLevel::Warn,
            LogLevel::Error => proxy_wasm::types::LogLevel::Error,
            LogLevel::Audit => audit_level(),
        };
        let _ = hostcalls::log(level, message);
    }
}

/// The level audit records are logged at: info, unless Envoy's threshold
/// for the wasm component is higher (then that level, so none is dropped).
fn audit_level() -> proxy_wasm::types::LogLevel {
    use proxy_wasm::types::LogLevel as L;
    let rank = |l: L| match l {
        L::Trace => 0,
        L::Debug => 1,
        L::Info => 2,
        L::Warn => 3,
        L::Error => 4,
        L::Critical => 5,
    };
    match hostcalls::get_log_level() {
        Ok(threshold) if rank(threshold) > rank(L::Info) => threshold,
        _ => L::Info,
    }
}

thread_local! {
    /// Metric ids by name, defined on first use (per VM).
    static METRICS: RefCell<std::collections::HashMap<String, u32>> = RefCell::new(std::collections::HashMap::new());
}

/// The id of metric `name` of `kind`, defining it on first use.
fn metric_id(kind: MetricType, name: &str) -> Option<u32> {
    METRICS.with(|m| {
        let mut m = m.try_borrow_mut().ok()?;
        if let Some(id) = m.get(name) {
            return Some(*id);
        }
        let id = hostcalls::define_metric(kind, name).ok()?;
        m.insert(name.to_owned(), id);
        Some(id)
    })
}

/// Envoy's shared data (one space for all workers of the process).
struct HostSharedData;

impl SharedStore for HostSharedData {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        // An empty value comes back as no bytes, but with its CAS token.
        match hostcalls::get_shared_data(key) {
            Ok((value, Some(cas))) => Some((value.unwrap_or_default(), cas)),
            _ => None,
        }
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), CasMismatch> {
        let cas = if cas == 0 { None } else { Some(cas) };
        hostcalls::set_shared_data(key, Some(value), cas).map_err(|_| CasMismatch)
    }
}

/// Root context: loads the configuration, hands it to new streams.
struct PalisadeRoot {
    loaded: Option<Rc<Loaded>>,
}

impl Context for PalisadeRoot {
    /// The plugin is going away (a reload, or shutdown): gives the audit
    /// chain's slot up so the next chain links to it at once.
    fn on_done(&mut self) -> bool {
        let host = ProxyWasmHost;
        let now = host.now().unwrap_or_default();
        match &self.loaded {
            Some(l) => crate::audit_log::release(&host, &trail(), &l.config.audit, now),
            None => crate::audit_log::release(&host, &trail(), &AuditConfig::defaults(), now),
        }
        true
    }

    /// A JWKS fetch, a bundle poll, an audit upload or an alert came back.
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        if let Some(loaded) = &self.loaded {
            if loaded.keys_answered(&ProxyWasmHost, token_id, body_size)
                || loaded.bundle_answered(&ProxyWasmHost, token_id, body_size)
            {
                return;
            }
        }
        crate::audit_log::answered(&ProxyWasmHost, &trail(), token_id);
    }

    /// A suspension or a late charge sent for a stream came back.
    fn on_grpc_call_response(&mut self, token_id: u32, status_code: u32, response_size: usize) {
        let host = ProxyWasmHost;
        let now = host.now().unwrap_or_default();
        if let Some(Some((suspension, decision_id))) =
            outbox().answered(&host, token_id, status_code, response_size, now)
        {
            let audit = match &self.loaded {
                Some(l) => l.config.audit.clone(),
                None => AuditConfig::defaults(),
            };
            crate::audit_log::alert(&host, &trail(), &suspension, &decision_id, &audit, now);
        }
    }
}

thread_local! {
    /// This VM's audit trail: one per VM, kept across configuration reloads.
    static TRAIL: Rc<Trail> = Rc::new(Trail::new(Rc::new(HostSharedData)));
}

fn trail() -> Rc<Trail> {
    TRAIL.with(Rc::clone)
}

thread_local! {
    /// This VM's fleet-wide calls that outlive their streams (suspensions,
    /// charges of streams that ended early): sent and answered here, at the
    /// root context. Kept across configuration reloads.
    static OUTBOX: Rc<crate::fleet::Outbox> = Rc::new(crate::fleet::Outbox::default());
}

fn outbox() -> Rc<crate::fleet::Outbox> {
    OUTBOX.with(Rc::clone)
}

impl RootContext for PalisadeRoot {
    /// Compiles the configuration. On any error, logs it and returns `false`,
    /// so Envoy refuses the config and keeps serving the last good one.
    fn on_configure(&mut self, _size: usize) -> bool {
        let host = ProxyWasmHost;
        let bytes = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => {
                host.log(
                    LogLevel::Error,
                    "palisade: configuration rejected: it is empty",
                );
                return false;
            }
            Err(status) => {
                host.log(
                    LogLevel::Error,
                    &format!("palisade: configuration unreadable: {status:?}"),
                );
                return false;
            }
        };
        match Config::from_json(&bytes) {
            Ok(config) => {
                #[cfg(feature = "test-trap")]
                host.log(
                    LogLevel::Warn,
                    "palisade: TEST-ONLY build (feature test-trap): a request can crash this VM; never deploy it",
                );
                for warning in &config.warnings {
                    host.log(
                        LogLevel::Warn,
                        &format!("palisade: configuration warning: {warning}"),
                    );
                }
                host.log(
                    LogLevel::Info,
                    &format!(
                        "palisade: configuration loaded: mode {:?}, {} provider(s), {}",
                        config.mode,
                        config.providers.len(),
                        config.policy.describe()
                    ),
                );
                let loaded = Loaded::new(config, Rc::new(HostSharedData));
                if let Some(previous) = &self.loaded {
                    loaded.adopt_bundle(previous);
                }
                if hostcalls::set_tick_period(crate::stream::TICK_PERIOD).is_err() {
                    host.log(LogLevel::Warn, "palisade: no tick timer: idle rate-limit state is reclaimed only as buckets fill, and the audit chain's slot lease is not renewed");
                }
                // Remote JWKS and bundles are fetched at once, not at the first tick.
                loaded.fetch_keys(&host);
                loaded.poll_bundle(&host);
                self.loaded = Some(Rc::new(loaded));
                true
            }
            Err(e) => {
                // One line, so log tooling keeps the whole reason together.
                let reason: Vec<&str> =
                    e.0.lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .collect();
                host.log(
                    LogLevel::Error,
                    &format!("palisade: configuration rejected: {}", reason.join(" ")),
                );
                false
            }
        }
    }

    /// Sweeps idle rate-limit state and fetches the JWKS and the bundle
    /// when due (the period is set in `on_configure`).
    fn on_tick(&mut self) {
        outbox().send(&ProxyWasmHost);
        if let Some(loaded) = &self.loaded {
            loaded.on_tick(&ProxyWasmHost);
            loaded.fetch_keys(&ProxyWasmHost);
            loaded.poll_bundle(&ProxyWasmHost);
        }
        crate::stream::audit_tick(&trail(), self.loaded.as_deref(), &ProxyWasmHost);
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(PalisadeHttp {
            stream: Stream::new(self.loaded.clone(), trail()).with_outbox(outbox()),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct PalisadeHttp {
    stream: Stream,
}

impl Context for PalisadeHttp {
    /// A fleet-wide check or charge of this stream answered (or failed:
    /// then `status` is its gRPC status and there is no message).
    fn on_grpc_call_response(&mut self, token_id: u32, status_code: u32, response_size: usize) {
        self.stream
            .on_grpc_response(&ProxyWasmHost, token_id, status_code, response_size);
    }
}

impl HttpContext for PalisadeHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        #[cfg(feature = "test-trap")]
        if hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, "x-palisade-test-trap")
            .ok()
            .flatten()
            .is_some()
        {
            // TEST-ONLY (feature `test-trap`): a crash mid-request.
            core::arch::wasm32::unreachable();
        }
        match self
            .stream
            .on_request_headers(&ProxyWasmHost, end_of_stream)
        {
            Flow::Continue => Action::Continue,
            Flow::Stop | Flow::Wait => Action::Pause,
        }
    }

    /// A request still waiting for its body is decided here (trailers end
    /// it); returning `Continue` undecided would let it through.
    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        match self.stream.on_request_trailers(&ProxyWasmHost) {
            Flow::Continue => Action::Continue,
            Flow::Stop | Flow::Wait => Action::Pause,
        }
    }

    /// With `request_body` configured, the decision waits here: `Pause`
    /// has Envoy buffer the body until enough of it has arrived.
    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        match self
            .stream
            .on_request_body(&ProxyWasmHost, body_size, end_of_stream)
        {
            Flow::Continue => Action::Continue,
            Flow::Stop | Flow::Wait => Action::Pause,
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        match self.stream.on_response_headers(&ProxyWasmHost) {
            Flow::Continue => Action::Continue,
            Flow::Stop | Flow::Wait => Action::Pause,
        }
    }

    /// `Pause` holds the end of a response until its records are charged
    /// fleet-wide (Envoy buffers it; the filter resumes it).
    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        match self
            .stream
            .on_response_body(&ProxyWasmHost, body_size, end_of_stream)
        {
            Flow::Continue => Action::Continue,
            Flow::Stop | Flow::Wait => Action::Pause,
        }
    }

    /// The stream is complete: its audit record is written now.
    fn on_log(&mut self) {
        self.stream.on_log(&ProxyWasmHost);
    }
}

/// The one raw hostcall: the request header map as serialized bytes, decoded
/// by [`crate::header_map`] instead of the SDK (which assumes UTF-8 names).
mod raw {
    extern "C" {
        fn proxy_get_header_map_pairs(
            map_type: u32,
            return_map_data: *mut *mut u8,
            return_map_size: *mut usize,
        ) -> u32;
    }

    const HTTP_REQUEST_HEADERS: u32 = 0;
    const STATUS_OK: u32 = 0;

    pub fn request_header_pairs() -> Option<Vec<u8>> {
        let mut data: *mut u8 = std::ptr::null_mut();
        let mut size: usize = 0;
        // SAFETY: the host writes a pointer and length it allocated through
        // this module's `proxy_on_memory_allocate` (exported by the SDK,
        // `Vec::with_capacity` + `forget`), so the buffer is ours to take
        // back as a `Vec<u8>` of that capacity and length, exactly as the SDK
        // itself does.
        unsafe {
            if proxy_get_header_map_pairs(HTTP_REQUEST_HEADERS, &mut data, &mut size) != STATUS_OK {
                return None;
            }
            if data.is_null() {
                return Some(Vec::new());
            }
            Some(Vec::from_raw_parts(data, size, size))
        }
    }
}
