//! The demo's Envoy sidecar config, rendered from `envoy/sidecar.template.yaml`.
//!
//! The plugin configuration is built here from the files it describes (the
//! test JWKS and the reference policy), so the committed `envoy/sidecar.yaml`
//! can never drift from them: a test renders it again and compares.

use serde_json::{json, Value};
use std::path::Path;

/// Ports and paths that vary between the committed config and test runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub listen_port: u16,
    pub admin_port: u16,
    pub upstream_port: u16,
    pub wasm_path: String,
}

impl Default for Placement {
    /// The committed `envoy/sidecar.yaml`: run from the repository root.
    fn default() -> Self {
        Placement {
            listen_port: 10000,
            admin_port: 9901,
            upstream_port: 8080,
            wasm_path: "target/wasm32-wasip1/release/palisade_filter.wasm".into(),
        }
    }
}

/// The demo plugin configuration: the test issuer and the reference policy.
pub fn plugin_config(repo: &Path) -> Result<Value, String> {
    let read = |rel: &str| {
        std::fs::read_to_string(repo.join(rel)).map_err(|e| format!("cannot read {rel}: {e}"))
    };
    let jwks: Value = serde_json::from_str(&read("envoy/test-keys/jwks.json")?)
        .map_err(|e| format!("envoy/test-keys/jwks.json: {e}"))?;
    Ok(json!({
        "mode": "enforce",
        "providers": [{
            "name": "demo-idp",
            "issuer": "https://idp.palisade.test",
            "audiences": ["customer-api"],
            "algorithms": ["RS256", "ES256", "EdDSA"],
            "jwks": jwks,
            "leeway_seconds": 30,
            "max_lifetime_seconds": 3600,
            "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
        }],
        "policy": {
            "modules": {"customer_data.rego": read("policies/customer_data.rego")?},
            "decision": "data.envoy.authz.decision",
            // The reference policy uses none of the constructs the RVM
            // decides differently (policy::KNOWN_RVM_DIVERGENCES); the
            // golden cases and the policy_input fuzz target check that the
            // two engines agree on it.
            "engine": "vm",
        },
        "rate_limits": [{
            "name": "customer-bulk",
            "match": {"path_prefix": "/api/v1/customers", "methods": ["GET"]},
            "key": "sub",
            "requests": {"limit": 60, "period_seconds": 60, "burst": 20},
            "records": {"limit": 250, "period_seconds": 300, "count": {"json_array": "/items"}},
            "max_page_size": {"param": "limit", "max": 100},
            "suspend_seconds": 120,
        }, {
            // The bulk export streams NDJSON: each line is a record.
            "name": "customer-export",
            "match": {"path_prefix": "/api/v1/exports", "methods": ["GET"]},
            "key": "sub",
            "requests": {"limit": 10, "period_seconds": 60, "burst": 5},
            "records": {"limit": 250, "period_seconds": 300, "count": {"ndjson": true}},
            "max_page_size": {"param": "limit", "max": 100},
            "suspend_seconds": 120,
        }],
        // Clients reach this sidecar directly: nothing they send as identity
        // or forwarding headers is a fact.
        "request_headers": {
            "strip_prefixes": ["x-user-", "x-jwt-", "x-auth-"],
            "untrusted_edge": true,
            "method_override": "reject",
        },
    }))
}

/// Renders `template`, putting `config` (pretty JSON) where `{{PALISADE_CONFIG}}` stands,
/// indented like the marker.
pub fn render(template: &str, config: &Value, at: &Placement) -> Result<String, String> {
    let pretty = serde_json::to_string_pretty(config).map_err(|e| e.to_string())?;
    let mut out = String::with_capacity(template.len() + pretty.len() * 2);
    for line in template.lines() {
        if let Some(indent) = line.strip_suffix("{{PALISADE_CONFIG}}") {
            if !indent.trim().is_empty() {
                return Err("{{PALISADE_CONFIG}} must stand alone on its line".into());
            }
            for json_line in pretty.lines() {
                out.push_str(indent);
                out.push_str(json_line);
                out.push('\n');
            }
            continue;
        }
        let line = line
            .replace("{{LISTEN_PORT}}", &at.listen_port.to_string())
            .replace("{{ADMIN_PORT}}", &at.admin_port.to_string())
            .replace("{{UPSTREAM_PORT}}", &at.upstream_port.to_string())
            .replace("{{WASM_PATH}}", &at.wasm_path);
        out.push_str(&line);
        out.push('\n');
    }
    if out.contains("{{") {
        return Err("template has a placeholder that was not filled".into());
    }
    Ok(out)
}

/// Renders the sidecar from the repository's template.
pub fn render_repo(repo: &Path, config: &Value, at: &Placement) -> Result<String, String> {
    let template = std::fs::read_to_string(repo.join("envoy/sidecar.template.yaml"))
        .map_err(|e| format!("cannot read envoy/sidecar.template.yaml: {e}"))?;
    render(&template, config, at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> &'static Path {
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
    }

    #[test]
    fn committed_sidecar_is_up_to_date() {
        let config = plugin_config(repo()).unwrap();
        let rendered = render_repo(repo(), &config, &Placement::default()).unwrap();
        let committed = std::fs::read_to_string(repo().join("envoy/sidecar.yaml")).unwrap();
        assert!(
            rendered == committed,
            "envoy/sidecar.yaml is stale; regenerate it with:\n  cargo run -p palisade-demo -- render-sidecar > envoy/sidecar.yaml"
        );
    }

    #[test]
    fn committed_demo_config_is_up_to_date() {
        let config = plugin_config(repo()).unwrap();
        let committed: Value = serde_json::from_str(
            &std::fs::read_to_string(repo().join("envoy/demo-config.json")).unwrap(),
        )
        .unwrap();
        assert!(
            config == committed,
            "envoy/demo-config.json is stale; regenerate it with:\n  cargo run -p palisade-demo -- render-config > envoy/demo-config.json"
        );
    }

    #[test]
    fn config_is_indented_under_its_marker() {
        let out = render(
            "a:\n  b: |\n    {{PALISADE_CONFIG}}\n",
            &json!({"k": 1}),
            &Placement::default(),
        )
        .unwrap();
        assert_eq!(out, "a:\n  b: |\n    {\n      \"k\": 1\n    }\n");
    }

    #[test]
    fn unfilled_placeholder_is_an_error() {
        assert!(render("x: {{NOPE}}\n", &json!({}), &Placement::default()).is_err());
    }
}
