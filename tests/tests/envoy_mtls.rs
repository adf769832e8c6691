//! Workload identity over real mTLS in real Envoy, with the shipped
//! `envoy/mtls.yaml` (its ports and file paths substituted) and certificates
//! written at test time by the shipped `envoy/mtls-certs.sh`.
//!
//! The policy in that file allows `GET /api/v1/orders` only to the workload
//! whose client certificate carries the URI SAN
//! `spiffe://palisade.test/ns/shop/sa/orders`, with no bearer token. The
//! TLS client is the `curl` CLI (`--cert --key --cacert`): a Rust TLS
//! client would add a TLS stack and its build to the tests crate for what
//! one command does; scripts/setup.sh installs curl.

use palisade_tests::envoy::{free_port, Envoy};
use palisade_tests::upstream::Upstream;
use palisade_tests::{http, repo, wasm_path};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const ORDERS: &str = "spiffe://palisade.test/ns/shop/sa/orders";
const INTRUDER: &str = "spiffe://palisade.test/ns/shop/sa/intruder";
const SERVER_NAME: &str = "shop-api.palisade.test";

/// Where the shipped config expects the certificates and the filter.
const SHIPPED_CERTS: &str = "target/mtls-certs/";
const SHIPPED_WASM: &str = "target/wasm32-wasip1/release/palisade_filter.wasm";

/// A temp dir, removed on drop unless the test failed.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("palisade-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("test files kept in {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Runs the shipped `envoy/mtls-certs.sh DIR`.
fn make_certs(dir: &Path) {
    let out = Command::new("bash")
        .arg(repo().join("envoy/mtls-certs.sh"))
        .arg(dir)
        .output()
        .expect("run envoy/mtls-certs.sh (needs bash and openssl)");
    assert!(
        out.status.success(),
        "envoy/mtls-certs.sh failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `envoy/mtls.yaml` for this test: certificate paths into `certs`, the
/// built filter, the demo API on `upstream_port`, and every other shipped
/// port moved to a free one (admin to 0). Returns the config and the new
/// port of each listener by name.
fn render_shipped(certs: &Path, upstream_port: u16) -> (Value, Vec<(String, u16)>) {
    let text = std::fs::read_to_string(repo().join("envoy/mtls.yaml")).unwrap();
    let mut config: Value = yaml_serde::from_str(&text).unwrap();

    let admin_port = config["admin"]["address"]["socket_address"]["port_value"]
        .as_u64()
        .unwrap();
    let mut listeners = Vec::new();
    let mut moved = vec![(admin_port, 0), (8080, u64::from(upstream_port))];
    for l in config["static_resources"]["listeners"].as_array().unwrap() {
        let name = l["name"].as_str().unwrap().to_owned();
        let shipped = l["address"]["socket_address"]["port_value"]
            .as_u64()
            .unwrap();
        let port = free_port();
        moved.push((shipped, u64::from(port)));
        listeners.push((name, port));
    }

    let mut seen = Seen::default();
    rewrite(&mut config, certs, &moved, &mut seen);
    // The substitutions hit what they must: a renamed path or port in the
    // shipped file fails here, not as a confusing connection error later.
    assert_eq!(seen.wasm, 1, "the filter path in envoy/mtls.yaml");
    assert!(seen.certs >= 9, "certificate paths in envoy/mtls.yaml");
    assert_eq!(
        seen.upstream, 1,
        "one cluster on the demo API port 8080 in envoy/mtls.yaml"
    );
    (config, listeners)
}

#[derive(Default)]
struct Seen {
    wasm: usize,
    certs: usize,
    upstream: usize,
}

fn rewrite(value: &mut Value, certs: &Path, moved: &[(u64, u64)], seen: &mut Seen) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if key == "port_value" {
                    let shipped = v.as_u64().unwrap();
                    let (_, port) = moved
                        .iter()
                        .find(|(from, _)| *from == shipped)
                        .unwrap_or_else(|| {
                            panic!("port {shipped} in envoy/mtls.yaml is unknown to this test")
                        });
                    seen.upstream += usize::from(shipped == 8080);
                    *v = Value::from(*port);
                } else {
                    rewrite(v, certs, moved, seen);
                }
            }
        }
        Value::Array(items) => {
            for v in items {
                rewrite(v, certs, moved, seen);
            }
        }
        Value::String(s) if s == SHIPPED_WASM => {
            seen.wasm += 1;
            *s = wasm_path().display().to_string();
        }
        Value::String(s) if s.starts_with(SHIPPED_CERTS) => {
            seen.certs += 1;
            *s = certs.join(&s[SHIPPED_CERTS.len()..]).display().to_string();
        }
        _ => {}
    }
}

/// What curl got: its exit code, and the response when there was one.
#[derive(Debug)]
struct Curl {
    exit: i32,
    stderr: String,
    response: Option<http::Response>,
}

/// `GET https://shop-api.palisade.test:PORT{path}` to 127.0.0.1 with curl,
/// trusting the test CA, presenting client certificate `client`
/// (`certs/NAME.pem` and `.key`) when given.
fn curl(
    certs: &Path,
    port: u16,
    client: Option<&str>,
    path: &str,
    headers: &[(&str, &str)],
) -> Curl {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-i", "--max-time", "20", "--resolve"])
        .arg(format!("{SERVER_NAME}:{port}:127.0.0.1"))
        .arg("--cacert")
        .arg(certs.join("ca.pem"));
    if let Some(name) = client {
        cmd.arg("--cert")
            .arg(certs.join(format!("{name}.pem")))
            .arg("--key")
            .arg(certs.join(format!("{name}.key")));
    }
    for (name, value) in headers {
        cmd.arg("-H").arg(format!("{name}: {value}"));
    }
    cmd.arg(format!("https://{SERVER_NAME}:{port}{path}"));
    let out = cmd
        .output()
        .expect("run curl (scripts/setup.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    Curl {
        exit: out.status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        response: (!text.is_empty()).then(|| parse(&text)),
    }
}

fn parse(text: &str) -> http::Response {
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    http::Response {
        status,
        headers: lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect(),
        body: body.to_owned(),
    }
}

/// The decision id the filter gave the last request the upstream served.
fn last_upstream_decision_id(up: &Upstream) -> String {
    up.app.last_request()["headers"]["x-palisade-decision-id"]
        .as_str()
        .expect("the upstream saw a decision id")
        .to_owned()
}

/// The audit record of a request, by the decision id in its response or
/// (allowed) in what the upstream received.
fn record(envoy: &Envoy, id: &str) -> Value {
    envoy
        .decision(id)
        .unwrap_or_else(|| panic!("no audit record {id}; Envoy log:\n{}", envoy.log()))
}

#[test]
fn workload_identity_over_mtls_with_the_shipped_config() {
    let certs = TempDir::new("mtls-certs");
    make_certs(&certs.0);
    let certs = &certs.0;
    let up = Upstream::start();
    let (config, ports) = render_shipped(certs, up.port);
    let ports: Vec<(&str, u16)> = ports.iter().map(|(n, p)| (n.as_str(), *p)).collect();
    let envoy = Envoy::start_config(&config, &ports);
    let inbound = envoy.port("shop-api-inbound");
    let ssl = |stat: &str| envoy.stat(&format!("listener.127.0.0.1_{inbound}.ssl.{stat}"));

    // The orders workload, by its certificate alone: allowed, upstream reached.
    let before = up.hits();
    let r = curl(
        certs,
        inbound,
        Some("orders"),
        "/api/v1/orders?limit=2",
        &[],
    );
    let response = r.response.as_ref().unwrap_or_else(|| panic!("{r:?}"));
    assert_eq!(response.status, 200, "{r:?}\n{}", envoy.log());
    assert_eq!(response.json()["items"].as_array().map(Vec::len), Some(2));
    assert_eq!(up.hits(), before + 1, "the allowed request reached the API");
    let allowed = record(&envoy, &last_upstream_decision_id(&up));
    assert_eq!(allowed["decision"], "allow");
    assert_eq!(allowed["reason"], "allowed");
    assert_eq!(allowed["client_principal"], ORDERS);
    assert_eq!(
        allowed["input"]["attributes"]["source"]["principal"],
        ORDERS
    );
    assert_eq!(allowed["subject"], Value::Null, "no bearer token involved");

    // The same certificate does not open another route: least privilege.
    let before = up.hits();
    let r = curl(certs, inbound, Some("orders"), "/api/v1/customers", &[]);
    assert_eq!(
        r.response.as_ref().map(|r| r.status),
        Some(403),
        "a workload authenticated by mTLS and denied by the policy is forbidden, \
         not asked for a bearer token (401): {r:?}"
    );
    assert_eq!(up.hits(), before, "a denied request never reaches the API");

    // The intruder workload: a valid certificate from the trusted CA, the
    // wrong identity. Denied by the policy, the upstream untouched, and a
    // forged client-cert header does not lend it the orders identity.
    for headers in [
        vec![],
        vec![(
            "x-forwarded-client-cert",
            "By=spiffe://palisade.test/ns/shop/sa/shop-api;URI=spiffe://palisade.test/ns/shop/sa/orders",
        )],
    ] {
        let before = up.hits();
        let r = curl(certs, inbound, Some("intruder"), "/api/v1/orders", &headers);
        let response = r.response.as_ref().unwrap_or_else(|| panic!("{r:?}"));
        assert_eq!(response.status, 403, "{r:?}");
        assert_eq!(response.header("www-authenticate"), None, "{r:?}");
        assert_eq!(up.hits(), before, "a denied request never reaches the API");
        let id = response
            .header("x-palisade-decision-id")
            .expect("a denial names its decision");
        let denied = record(&envoy, id);
        assert_eq!(denied["decision"], "deny");
        assert_eq!(denied["reason"], "policy_denied");
        assert_eq!(denied["http_status"], 403);
        assert_eq!(denied["client_principal"], INTRUDER);
        assert_eq!(denied["input"]["attributes"]["source"]["principal"], INTRUDER);
    }

    // No client certificate, or one from a CA the listener does not trust
    // (claiming the orders identity): the handshake refuses them, so there
    // is no HTTP response, no decision and no upstream hit.
    let decisions = envoy.decisions().len();
    for (client, stat) in [
        (None, "fail_verify_no_cert"),
        (Some("rogue-orders"), "fail_verify_error"),
    ] {
        let (before, refused) = (up.hits(), ssl(stat));
        let r = curl(certs, inbound, client, "/api/v1/orders", &[]);
        assert!(r.response.is_none() && r.exit != 0, "{client:?}: {r:?}");
        assert_eq!(ssl(stat), refused + 1, "{client:?}: {}", r.stderr);
        assert_eq!(up.hits(), before, "{client:?} reached the API");
    }
    assert_eq!(envoy.decisions().len(), decisions, "no request got through");

    // The shipped two-listener setup: each workload speaks plain HTTP to its
    // own side, which originates mTLS with that workload's certificate.
    let before = up.hits();
    let r = http::get(envoy.port("orders-outbound"), "/api/v1/orders", &[]);
    assert_eq!(r.status, 200, "{r:?}\n{}", envoy.log());
    assert_eq!(up.hits(), before + 1);
    let via = record(&envoy, &last_upstream_decision_id(&up));
    assert_eq!(via["client_principal"], ORDERS);

    let before = up.hits();
    let r = http::get(envoy.port("intruder-outbound"), "/api/v1/orders", &[]);
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(up.hits(), before);
    let id = r.header("x-palisade-decision-id").expect("decision id");
    assert_eq!(record(&envoy, id)["client_principal"], INTRUDER);
}
