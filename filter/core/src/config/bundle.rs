//! `policy.bundle`: an OPA bundle given with the configuration (`inline`),
//! named by path (`file`, read by the tool that loads the configuration),
//! or polled from a bundle server (`remote`).

use super::raw::{RawBundle, RawBundleRemote, RawBundleSigning, RawPolicy};
use super::{err, ConfigError, PolicySource};
use crate::bundle::Verifier;
use crate::policy::remote_bundle::{self, RemoteBundle};
use crate::policy::PolicyOptions;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use std::time::Duration;

/// Bounds of `policy.bundle.remote.poll_seconds`.
const POLL_SECONDS: std::ops::RangeInclusive<u64> = 1..=3_600;

/// Compiles the bundle source of `raw` (which has `bundle`).
pub fn compile(
    raw: &RawPolicy,
    bundle: &RawBundle,
    decision: String,
    options: PolicyOptions,
) -> Result<PolicySource, ConfigError> {
    if !raw.modules.is_empty() || raw.data.is_some() {
        return Err(err(
            "policy.bundle",
            "give `modules` (and `data`) or `bundle`, not both: the bundle carries its own",
        ));
    }
    if !raw.module_rego_versions.is_empty() {
        return Err(err(
            "policy.module_rego_versions",
            "a bundle names its modules' syntax in its manifest (`rego_version`, `file_rego_versions`); `policy.rego_version` sets the default",
        ));
    }
    let verifier = bundle.signing.as_ref().map(verifier).transpose()?;
    match (&bundle.file, &bundle.inline, &bundle.remote) {
        (Some(path), None, None) => Err(err(
            "policy.bundle.file",
            format!("`{path}`: this host gives the filter no file access (Envoy's Wasm runtime has no file system); embed the bundle as `inline` (base64), or serve it with `remote`. The `palisade` CLI and harness read `file` themselves"),
        )),
        (None, Some(encoded), None) => {
            let bytes = STANDARD
                .decode(encoded.trim())
                .map_err(|e| err("policy.bundle.inline", format!("not base64: {e}")))?;
            remote_bundle::compile(&bytes, verifier.as_ref(), &decision, &options)
                .map(|loaded| PolicySource::Fixed(loaded.policy))
                .map_err(|e| err("policy.bundle.inline", e))
        }
        (None, None, Some(remote)) => {
            compile_remote(remote, bundle.signing.as_ref(), verifier, decision, options).map(PolicySource::Remote)
        }
        _ => Err(err(
            "policy.bundle",
            "give exactly one of `file`, `inline`, `remote`",
        )),
    }
}

fn verifier(signing: &RawBundleSigning) -> Result<Verifier, ConfigError> {
    Verifier::new(
        signing.algorithm.as_deref().unwrap_or("RS256"),
        &signing.key,
        signing.key_id.clone(),
        signing.scope.clone(),
    )
    .map_err(|e| err("policy.bundle.signing", e))
}

fn compile_remote(
    r: &RawBundleRemote,
    signing: Option<&RawBundleSigning>,
    verifier: Option<Verifier>,
    decision: String,
    options: PolicyOptions,
) -> Result<RemoteBundle, ConfigError> {
    let here = "policy.bundle.remote";
    if r.cluster.is_empty() {
        return Err(err(format!("{here}.cluster"), "must name an Envoy cluster"));
    }
    if !r.path.starts_with('/') {
        return Err(err(format!("{here}.path"), "must start with /"));
    }
    let poll = r.poll_seconds.unwrap_or(60);
    if !POLL_SECONDS.contains(&poll) {
        return Err(err(
            format!("{here}.poll_seconds"),
            format!("{poll} is not between 1 and 3600"),
        ));
    }
    let timeout = r.timeout_ms.unwrap_or(5_000);
    if !(100..=30_000).contains(&timeout) {
        return Err(err(
            format!("{here}.timeout_ms"),
            format!("{timeout} is not between 100 and 30000"),
        ));
    }
    let fingerprint = {
        use sha2::{Digest, Sha256};
        let signing = signing.map(|k| (&k.key, &k.algorithm, &k.key_id, &k.scope));
        let described = format!(
            "{:?}",
            (
                &r.cluster,
                &r.path,
                &r.authority,
                poll,
                timeout,
                signing,
                &decision,
                &options
            )
        );
        Sha256::digest(described.as_bytes()).into()
    };
    Ok(RemoteBundle {
        fingerprint,
        cluster: r.cluster.clone(),
        path: r.path.clone(),
        authority: r.authority.clone().unwrap_or_else(|| r.cluster.clone()),
        poll: Duration::from_secs(poll),
        timeout: Duration::from_millis(timeout),
        verifier,
        decision,
        options,
    })
}
