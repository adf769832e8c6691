//! Subcommands of the `palisade` CLI. Each returns an exit code, or an error
//! message that names what is missing or wrong (never a panic).

mod audit;
mod check;
mod eval;
mod serve;
mod test;
mod token;

use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "palisade",
    version,
    about = "Test Palisade policies and run the filter without Envoy"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the Rego unit tests (`test_*` rules) in policy files, as `opa test` does.
    Test(test::Args),
    /// Evaluate one decision with the filter's decision core.
    Eval(eval::Args),
    /// Run request cases (YAML) through the real .wasm in the harness.
    Check(check::Args),
    /// Mint a token signed with a TEST-ONLY key (never a production key).
    Token(token::Args),
    /// Run the filter as a local HTTP proxy in front of an upstream.
    Serve(serve::Args),
    /// Check the tamper-evident audit trail.
    #[command(subcommand)]
    Audit(audit::Command),
}

pub fn run(cli: Cli) -> Result<ExitCode, String> {
    match cli.command {
        Command::Test(a) => test::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Check(a) => check::run(a),
        Command::Token(a) => token::run(a),
        Command::Serve(a) => serve::run(a),
        Command::Audit(c) => audit::run(c),
    }
}

/// Where the filter and its plugin configuration come from.
#[derive(Debug, clap::Args)]
pub struct FilterArgs {
    /// The plugin configuration (JSON, as in Envoy's `configuration`).
    #[arg(long, short)]
    config: PathBuf,
    /// Rego files that replace the configuration's `policy.modules`, so a
    /// policy can be edited in place.
    #[arg(long = "policy", value_name = "REGO")]
    policies: Vec<PathBuf>,
}

impl FilterArgs {
    /// The configuration JSON, with `--policy` files swapped in and a
    /// `policy.bundle.file` read (relative to the configuration's folder)
    /// and embedded as `inline`: the filter itself has no file access.
    pub fn config_bytes(&self) -> Result<Vec<u8>, String> {
        let text = read(&self.config)?;
        let bundle_file = text.contains("\"file\"");
        if self.policies.is_empty() && !bundle_file {
            return Ok(text.into_bytes());
        }
        let mut config: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| format!("{}: not JSON: {e}", self.config.display()))?;
        let Some(policy) = config
            .pointer_mut("/policy")
            .and_then(|p| p.as_object_mut())
        else {
            return Err(format!("{}: has no `policy` object", self.config.display()));
        };
        if !self.policies.is_empty() {
            let mut modules = serde_json::Map::new();
            for p in &self.policies {
                let name = p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| p.display().to_string());
                modules.insert(name, read(p)?.into());
            }
            policy.insert("modules".into(), modules.into());
        }
        if let Some(bundle) = policy.get_mut("bundle").and_then(|b| b.as_object_mut()) {
            if let Some(serde_json::Value::String(file)) = bundle.remove("file") {
                let base = self.config.parent().unwrap_or(std::path::Path::new("."));
                let path = base.join(&file);
                let bytes = std::fs::read(&path)
                    .map_err(|e| format!("policy.bundle.file: {}: {e}", path.display()))?;
                use base64::Engine as _;
                let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
                bundle.insert("inline".into(), encoded.into());
            }
        }
        Ok(config.to_string().into_bytes())
    }
}

/// The filter `.wasm` to run.
#[derive(Debug, clap::Args)]
pub struct WasmArgs {
    /// The built filter (default: target/wasm32-wasip1/release/palisade_filter.wasm).
    #[arg(
        long,
        env = "PALISADE_WASM",
        default_value = "target/wasm32-wasip1/release/palisade_filter.wasm"
    )]
    wasm: PathBuf,
}

pub fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}
