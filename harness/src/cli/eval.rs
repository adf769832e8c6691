//! `palisade eval`: one decision from the decision core, for an input document.

use super::{read, FilterArgs};
use palisade_core::config::Config;
use palisade_core::decision::{interpret, PolicyVerdict};
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    filter: FilterArgs,
    /// The policy input (JSON, the OPA-Envoy shape plus `token`).
    #[arg(long, short)]
    input: PathBuf,
}

pub fn run(args: Args) -> Result<ExitCode, String> {
    let config = Config::from_json(&args.filter.config_bytes()?)
        .map_err(|e| format!("{}: {e}", args.filter.config.display()))?;
    let input: serde_json::Value = serde_json::from_str(&read(&args.input)?)
        .map_err(|e| format!("{}: not JSON: {e}", args.input.display()))?;
    let Some(policy) = config.policy.fixed() else {
        return Err(format!(
            "{}: the policy comes from a bundle server (`policy.bundle.remote`), which `palisade eval` does not fetch; download the bundle and name it in `policy.bundle.file`",
            args.filter.config.display()
        ));
    };
    // `time.now_ns` and `io.jwt.decode_verify` see this machine's clock:
    // the CLI's own business, not the filter's.
    #[allow(clippy::disallowed_methods)]
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let result = policy.evaluate_at(regorus::Value::from(input), now);
    let raw = match &result {
        Ok(v) => serde_json::from_str(&v.to_json_str().unwrap_or_default()).unwrap_or(json!(null)),
        Err(e) => json!({"error": e}),
    };
    let out = match interpret(result) {
        PolicyVerdict::Allow(d) => json!({
            "decision": "allow",
            "reason": "allowed",
            "headers": d.request_headers_to_add,
            "result": raw,
        }),
        PolicyVerdict::Deny(d) => json!({
            "decision": "deny",
            "reason": d.reason.code(),
            "detail": d.detail,
            "result": raw,
        }),
    };
    println!(
        "{}",
        serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?
    );
    Ok(ExitCode::SUCCESS)
}
