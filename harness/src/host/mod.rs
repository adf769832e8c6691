//! A proxy-wasm host on wasmtime that runs `palisade_filter.wasm` unchanged.
//!
//! [`FilterModule`] compiles the `.wasm` once; each [`Vm`] is one instance
//! with its own `Store`, like one Envoy worker's VM. VMs made with the same
//! [`SharedSpace`] share data and metrics, as Envoy's workers do. A trap in
//! the guest fails the request closed (503) and leaves the VM dead until it
//! is started again, as Envoy's `FAIL_CLOSED` does.

mod abi;
mod memory;
pub mod state;

pub use state::{
    Clock, FakeClock, HeaderPairs, HttpCall, LocalReply, LogLine, SharedSpace, SystemClock,
};
use state::{HostState, StreamState};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use wasmtime::{Config, Engine, InstancePre, Linker, Module, Store, TypedFunc};

const ROOT_CONTEXT: u32 = 1;

/// A compiled filter, ready to start VMs from.
#[derive(Clone)]
pub struct FilterModule {
    engine: Engine,
    pre: InstancePre<HostState>,
}

impl FilterModule {
    /// Compiles the `.wasm` at `path`.
    pub fn load(path: &Path) -> Result<FilterModule, String> {
        let bytes = std::fs::read(path).map_err(|e| {
            format!(
                "cannot read {}: {e}\n  build it with: cargo build -p palisade-filter --target wasm32-wasip1 --release",
                path.display()
            )
        })?;
        FilterModule::from_bytes(&bytes)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<FilterModule, String> {
        let mut config = Config::new();
        config.cranelift_opt_level(wasmtime::OptLevel::Speed);
        let engine = Engine::new(&config).map_err(|e| format!("wasmtime: {e}"))?;
        let module =
            Module::new(&engine, bytes).map_err(|e| format!("not a valid wasm module: {e}"))?;
        let mut linker: Linker<HostState> = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |s: &mut HostState| &mut s.wasi)
            .map_err(|e| format!("linking WASI: {e}"))?;
        abi::link(&mut linker).map_err(|e| format!("linking proxy-wasm: {e}"))?;
        // Anything else the module imports traps with its name when called.
        linker
            .define_unknown_imports_as_traps(&module)
            .map_err(|e| format!("linking: {e}"))?;
        let pre = linker
            .instantiate_pre(&module)
            .map_err(|e| format!("linking: {e}"))?;
        Ok(FilterModule { engine, pre })
    }
}

/// Why a VM did not start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartError {
    /// `on_configure` returned false: the filter refused the configuration.
    /// The guest's log lines say why.
    ConfigRejected { logs: Vec<LogLine> },
    /// The guest trapped or a lifecycle call failed.
    Trap(String),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::ConfigRejected { logs } => {
                write!(f, "the filter rejected the configuration")?;
                for l in logs.iter().filter(|l| l.level >= 3) {
                    write!(f, "\n  {}", l.message)?;
                }
                Ok(())
            }
            StartError::Trap(msg) => write!(f, "the filter trapped: {msg}"),
        }
    }
}

/// One request, as a client and its connection present it.
#[derive(Debug, Clone, Default)]
pub struct HttpRequest {
    pub method: String,
    /// Path with query.
    pub path: String,
    pub authority: String,
    pub scheme: String,
    pub headers: HeaderPairs,
    pub body: Vec<u8>,
    pub trailers: HeaderPairs,
    /// Peer `ip:port` (`source.address`).
    pub peer: String,
    /// mTLS peer URI SAN (`connection.uri_san_peer_certificate`), if any.
    pub principal: Option<String>,
    /// `request.id`; Envoy would make a UUID.
    pub id: Option<String>,
}

/// What the upstream answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamResponse {
    pub status: u16,
    pub headers: HeaderPairs,
    pub body: Vec<u8>,
}

impl Default for UpstreamResponse {
    fn default() -> Self {
        UpstreamResponse {
            status: 200,
            headers: vec![(b"content-type".to_vec(), b"application/json".to_vec())],
            body: b"{}".to_vec(),
        }
    }
}

/// The request as it would leave for the upstream, after the filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamRequest {
    pub headers: HeaderPairs,
    pub body: Vec<u8>,
}

impl UpstreamRequest {
    /// The first value of `name` (case-insensitive), lossily as text.
    pub fn header(&self, name: &str) -> Option<String> {
        header_value(&self.headers, name)
    }
}

pub fn header_value(headers: &HeaderPairs, name: &str) -> Option<String> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name.as_bytes()))
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
}

/// What happened to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    pub status: u16,
    pub headers: HeaderPairs,
    pub body: Vec<u8>,
    /// The request the upstream received; `None` if it never left.
    pub upstream_request: Option<UpstreamRequest>,
    /// True if the filter answered locally.
    pub local_reply: bool,
    /// The trap, if the guest trapped during this request.
    pub trap: Option<String>,
    /// Log lines the guest wrote during this request.
    pub logs: Vec<LogLine>,
}

impl Exchange {
    pub fn header(&self, name: &str) -> Option<String> {
        header_value(&self.headers, name)
    }

    /// The body as JSON (`Null` if it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// Palisade's audit record of this request's decision, parsed.
    pub fn decision(&self) -> Option<serde_json::Value> {
        self.audit_records()
            .into_iter()
            .find(|r| r["event"] == "decision")
    }

    /// Every audit record written during this request (a chain's first
    /// request also writes its `chain_reset`).
    pub fn audit_records(&self) -> Vec<serde_json::Value> {
        self.logs
            .iter()
            .filter_map(|l| l.message.strip_prefix(palisade_filter::audit_log::PREFIX))
            .filter_map(|json| serde_json::from_str(json).ok())
            .collect()
    }
}

/// `proxy_on_http_call_response(root, token, headers, body_size, trailers)`.
type CallResponseFn = TypedFunc<(u32, u32, u32, u32, u32), ()>;

/// The guest's exported entry points, looked up once per VM.
struct Entry {
    request_headers: TypedFunc<(u32, u32, u32), u32>,
    request_body: Option<TypedFunc<(u32, u32, u32), u32>>,
    request_trailers: Option<TypedFunc<(u32, u32), u32>>,
    http_call_response: Option<CallResponseFn>,
    response_headers: TypedFunc<(u32, u32, u32), u32>,
    response_body: Option<TypedFunc<(u32, u32, u32), u32>>,
    context_create: TypedFunc<(u32, u32), ()>,
    done: Option<TypedFunc<u32, u32>>,
    log: Option<TypedFunc<u32, ()>>,
    delete: Option<TypedFunc<u32, ()>>,
    tick: Option<TypedFunc<u32, ()>>,
}

/// One running filter instance (one Envoy worker's VM).
pub struct Vm {
    store: Store<HostState>,
    entry: Entry,
    next_context: u32,
    dead: Option<String>,
}

const PAUSE: u32 = 1;

impl Vm {
    /// Instantiates the filter and runs `on_vm_start` and `on_configure`
    /// with `plugin_config`.
    pub fn start(
        module: &FilterModule,
        plugin_config: &[u8],
        clock: Arc<dyn Clock>,
        shared: Arc<SharedSpace>,
    ) -> Result<Vm, StartError> {
        let trap = |e: wasmtime::Error| StartError::Trap(format!("{e:?}"));
        let mut store = Store::new(
            &module.engine,
            HostState::new(plugin_config.to_vec(), clock, shared),
        );
        let instance = module.pre.instantiate(&mut store).map_err(trap)?;
        if let Ok(init) = instance.get_typed_func::<(), ()>(&mut store, "_initialize") {
            init.call(&mut store, ()).map_err(trap)?;
        } else if let Ok(start) = instance.get_typed_func::<(), ()>(&mut store, "_start") {
            start.call(&mut store, ()).map_err(trap)?;
        }
        let f2 = |store: &mut Store<HostState>, name: &str| {
            instance.get_typed_func::<(u32, u32, u32), u32>(store, name)
        };
        let entry = Entry {
            request_headers: f2(&mut store, "proxy_on_request_headers").map_err(trap)?,
            request_body: f2(&mut store, "proxy_on_request_body").ok(),
            request_trailers: instance
                .get_typed_func(&mut store, "proxy_on_request_trailers")
                .ok(),
            http_call_response: instance
                .get_typed_func(&mut store, "proxy_on_http_call_response")
                .ok(),
            response_headers: f2(&mut store, "proxy_on_response_headers").map_err(trap)?,
            response_body: f2(&mut store, "proxy_on_response_body").ok(),
            context_create: instance
                .get_typed_func(&mut store, "proxy_on_context_create")
                .map_err(trap)?,
            done: instance.get_typed_func(&mut store, "proxy_on_done").ok(),
            log: instance.get_typed_func(&mut store, "proxy_on_log").ok(),
            delete: instance.get_typed_func(&mut store, "proxy_on_delete").ok(),
            tick: instance.get_typed_func(&mut store, "proxy_on_tick").ok(),
        };
        entry
            .context_create
            .call(&mut store, (ROOT_CONTEXT, 0))
            .map_err(trap)?;
        let vm_start: TypedFunc<(u32, u32), u32> = instance
            .get_typed_func(&mut store, "proxy_on_vm_start")
            .map_err(trap)?;
        let configure: TypedFunc<(u32, u32), u32> = instance
            .get_typed_func(&mut store, "proxy_on_configure")
            .map_err(trap)?;
        if vm_start.call(&mut store, (ROOT_CONTEXT, 0)).map_err(trap)? == 0 {
            return Err(StartError::ConfigRejected {
                logs: store.data().logs.clone(),
            });
        }
        let size = u32::try_from(plugin_config.len()).unwrap_or(u32::MAX);
        if configure
            .call(&mut store, (ROOT_CONTEXT, size))
            .map_err(trap)?
            == 0
        {
            return Err(StartError::ConfigRejected {
                logs: store.data().logs.clone(),
            });
        }
        Ok(Vm {
            store,
            entry,
            next_context: ROOT_CONTEXT + 1,
            dead: None,
        })
    }

    /// Log lines written so far (configure-time warnings included).
    pub fn logs(&self) -> &[LogLine] {
        &self.store.data().logs
    }

    /// True once the guest has trapped.
    pub fn is_dead(&self) -> bool {
        self.dead.is_some()
    }

    /// Sends `request` through the filter; `upstream` answers it if the
    /// filter lets it through.
    pub fn handle(
        &mut self,
        request: &HttpRequest,
        upstream: &mut dyn FnMut(&UpstreamRequest) -> UpstreamResponse,
    ) -> Exchange {
        let logs_before = self.store.data().logs.len();
        if let Some(trap) = &self.dead {
            return failed_closed(
                format!("the VM is dead after an earlier trap: {trap}"),
                Vec::new(),
            );
        }
        let outcome = self.run_stream(request, upstream);
        let logs = self
            .store
            .data()
            .logs
            .get(logs_before..)
            .unwrap_or_default()
            .to_vec();
        match outcome {
            Ok(exchange) => Exchange { logs, ..exchange },
            Err(e) => {
                let message = format!("{e:?}");
                self.dead = Some(message.clone());
                failed_closed(message, logs)
            }
        }
    }

    fn run_stream(
        &mut self,
        request: &HttpRequest,
        upstream: &mut dyn FnMut(&UpstreamRequest) -> UpstreamResponse,
    ) -> wasmtime::Result<Exchange> {
        let ctx = self.next_context;
        self.next_context = self.next_context.wrapping_add(1).max(ROOT_CONTEXT + 1);
        self.store.data_mut().stream = stream_state(request);
        self.entry
            .context_create
            .call(&mut self.store, (ctx, ROOT_CONTEXT))?;

        let headers =
            u32::try_from(self.store.data().stream.request_headers.len()).unwrap_or(u32::MAX);
        let body_len = u32::try_from(request.body.len()).unwrap_or(u32::MAX);
        let has_trailers = !request.trailers.is_empty();
        let eos = u32::from(request.body.is_empty() && !has_trailers);
        let mut action = self
            .entry
            .request_headers
            .call(&mut self.store, (ctx, headers, eos))?;
        if self.store.data().stream.local_reply.is_none() && !request.body.is_empty() {
            if let Some(on_body) = &self.entry.request_body {
                action =
                    on_body.call(&mut self.store, (ctx, body_len, u32::from(!has_trailers)))?;
            }
        }
        if self.store.data().stream.local_reply.is_none() && has_trailers {
            if let Some(on_trailers) = &self.entry.request_trailers {
                let n = u32::try_from(request.trailers.len()).unwrap_or(u32::MAX);
                action = on_trailers.call(&mut self.store, (ctx, n))?;
            }
        }
        if let Some(reply) = self.store.data().stream.local_reply.clone() {
            self.finish(ctx)?;
            return Ok(local(reply));
        }
        if action == PAUSE {
            self.finish(ctx)?;
            return Ok(failed_closed(
                "the filter paused the request without replying".into(),
                Vec::new(),
            ));
        }

        let sent = UpstreamRequest {
            headers: self.store.data().stream.request_headers.clone(),
            body: self.store.data().stream.request_body.clone(),
        };
        let response = upstream(&sent);
        {
            let s = &mut self.store.data_mut().stream;
            s.response_headers = vec![(
                b":status".to_vec(),
                response.status.to_string().into_bytes(),
            )];
            s.response_headers.extend(response.headers.iter().cloned());
            s.response_body = response.body.clone();
        }
        let n = u32::try_from(self.store.data().stream.response_headers.len()).unwrap_or(u32::MAX);
        let rlen = u32::try_from(response.body.len()).unwrap_or(u32::MAX);
        self.entry.response_headers.call(
            &mut self.store,
            (ctx, n, u32::from(response.body.is_empty())),
        )?;
        if self.store.data().stream.local_reply.is_none() && !response.body.is_empty() {
            if let Some(on_body) = &self.entry.response_body {
                on_body.call(&mut self.store, (ctx, rlen, 1))?;
            }
        }
        if let Some(reply) = self.store.data().stream.local_reply.clone() {
            self.finish(ctx)?;
            let mut exchange = local(reply);
            exchange.upstream_request = Some(sent);
            return Ok(exchange);
        }
        self.finish(ctx)?;
        let s = &self.store.data().stream;
        let status = header_value(&s.response_headers, ":status")
            .and_then(|v| v.parse().ok())
            .unwrap_or(response.status);
        Ok(Exchange {
            status,
            headers: s
                .response_headers
                .iter()
                .filter(|(k, _)| !k.starts_with(b":"))
                .cloned()
                .collect(),
            body: s.response_body.clone(),
            upstream_request: Some(sent),
            local_reply: false,
            trap: None,
            logs: Vec::new(),
        })
    }

    fn finish(&mut self, ctx: u32) -> wasmtime::Result<()> {
        if let Some(done) = &self.entry.done {
            done.call(&mut self.store, ctx)?;
        }
        if let Some(log) = &self.entry.log {
            log.call(&mut self.store, ctx)?;
        }
        if let Some(delete) = &self.entry.delete {
            delete.call(&mut self.store, ctx)?;
        }
        Ok(())
    }

    /// Shuts the VM down as Envoy does when a plugin is removed or reloaded:
    /// the root context's `proxy_on_done`, then `proxy_on_delete`.
    pub fn shutdown(&mut self) -> Result<(), String> {
        if let Some(done) = &self.entry.done {
            done.call(&mut self.store, ROOT_CONTEXT)
                .map_err(|e| format!("{e:?}"))?;
        }
        if let Some(delete) = &self.entry.delete {
            delete
                .call(&mut self.store, ROOT_CONTEXT)
                .map_err(|e| format!("{e:?}"))?;
        }
        Ok(())
    }

    /// Runs the root context's tick handler once, if the filter set a period.
    pub fn tick(&mut self) -> Result<(), String> {
        if self.store.data().tick_period_ms == 0 {
            return Ok(());
        }
        if let Some(tick) = &self.entry.tick {
            tick.call(&mut self.store, ROOT_CONTEXT)
                .map_err(|e| format!("{e:?}"))?;
        }
        Ok(())
    }

    /// HTTP calls the filter dispatched and that have not been answered.
    pub fn pending_http_calls(&self) -> &[HttpCall] {
        &self.store.data().http_calls
    }

    /// Answers the pending call `token` (from a script or a real upstream),
    /// running the filter's `on_http_call_response`.
    pub fn deliver_http_call_response(
        &mut self,
        token: u32,
        response: &UpstreamResponse,
    ) -> Result<(), String> {
        let calls = &mut self.store.data_mut().http_calls;
        let Some(i) = calls.iter().position(|c| c.token == token) else {
            return Err(format!("no pending http call with token {token}"));
        };
        calls.remove(i);
        let mut headers = vec![(
            b":status".to_vec(),
            response.status.to_string().into_bytes(),
        )];
        headers.extend(response.headers.iter().cloned());
        let n = u32::try_from(headers.len()).unwrap_or(u32::MAX);
        let len = u32::try_from(response.body.len()).unwrap_or(u32::MAX);
        self.store.data_mut().call_response = Some((headers, response.body.clone(), Vec::new()));
        let result = match &self.entry.http_call_response {
            Some(f) => f
                .call(&mut self.store, (ROOT_CONTEXT, token, n, len, 0))
                .map_err(|e| format!("{e:?}")),
            None => Err("the filter exports no proxy_on_http_call_response".into()),
        };
        self.store.data_mut().call_response = None;
        if let Err(e) = &result {
            self.dead = Some(e.clone());
        }
        result
    }
}

fn stream_state(request: &HttpRequest) -> StreamState {
    let mut headers: HeaderPairs = vec![
        (b":method".to_vec(), request.method.clone().into_bytes()),
        (b":path".to_vec(), request.path.clone().into_bytes()),
        (
            b":authority".to_vec(),
            request.authority.clone().into_bytes(),
        ),
        (b":scheme".to_vec(), request.scheme.clone().into_bytes()),
    ];
    headers.extend(
        request
            .headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone())),
    );
    let mut properties: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    properties.insert("source.address".into(), request.peer.clone().into_bytes());
    properties.insert("destination.address".into(), b"127.0.0.1:10000".to_vec());
    properties.insert("request.protocol".into(), b"HTTP/1.1".to_vec());
    if let Some(id) = &request.id {
        properties.insert("request.id".into(), id.clone().into_bytes());
    }
    if let Some(p) = &request.principal {
        properties.insert(
            "connection.uri_san_peer_certificate".into(),
            p.clone().into_bytes(),
        );
        properties.insert("connection.mtls".into(), vec![1]);
    }
    StreamState {
        request_headers: headers,
        request_body: request.body.clone(),
        request_trailers: request.trailers.clone(),
        properties,
        ..StreamState::default()
    }
}

fn local(reply: LocalReply) -> Exchange {
    Exchange {
        status: reply.status,
        headers: reply.headers,
        body: reply.body,
        upstream_request: None,
        local_reply: true,
        trap: None,
        logs: Vec::new(),
    }
}

/// The answer when the VM cannot decide: 503, upstream not reached.
fn failed_closed(trap: String, logs: Vec<LogLine>) -> Exchange {
    Exchange {
        status: 503,
        headers: vec![(b"content-type".to_vec(), b"text/plain".to_vec())],
        body: b"palisade harness: the filter failed; request refused".to_vec(),
        upstream_request: None,
        local_reply: true,
        trap: Some(trap),
        logs,
    }
}
