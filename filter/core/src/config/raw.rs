//! The plugin configuration exactly as users write it (public API).
//!
//! Every struct refuses unknown fields: a typo such as `audience` for
//! `audiences` must fail the load rather than silently weaken a check.
//! Validation into the compiled form lives in [`super::compile`].

use serde::Deserialize;
use std::collections::BTreeMap;

/// Top level of the JSON passed as Envoy's plugin `configuration`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub providers: Vec<RawProvider>,
    pub policy: RawPolicy,
    #[serde(default)]
    pub token_cache: Option<RawTokenCache>,
    #[serde(default)]
    pub rate_limits: Vec<RawRateLimit>,
    #[serde(default)]
    pub audit: Option<RawAudit>,
    #[serde(default)]
    pub request_headers: Option<RawRequestHeaders>,
    /// Give policies the start of request bodies (OPA-Envoy's
    /// `with_request_body`).
    #[serde(default)]
    pub request_body: Option<RawRequestBody>,
}

/// How much of a request body the filter waits for and reads.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRequestBody {
    /// Bytes read at most (1 to 1048576); the rest passes unread and the
    /// policy sees `truncated_body: true`.
    pub max_bytes: usize,
}

/// Which client-sent headers are not facts, and which verified ones the
/// upstream gets (public API, see the README).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRequestHeaders {
    /// More prefixes of headers a client may not set (`x-palisade-` always).
    #[serde(default)]
    pub strip_prefixes: Vec<String>,
    /// The edge is not trusted: `x-forwarded-*` and `forwarded` are removed.
    #[serde(default)]
    pub untrusted_edge: bool,
    /// `remove` (default) or `reject` (400 when it disagrees with the method).
    #[serde(default)]
    pub method_override: Option<String>,
    /// Header → claim, set on allowed requests from the verified token
    /// (default `{"x-palisade-subject": "sub"}`).
    #[serde(default)]
    pub identity: Option<BTreeMap<String, String>>,
    /// `reject` (default): a `;` path parameter is refused (400);
    /// `allow` lets it through to the policy and the upstream.
    #[serde(default)]
    pub path_parameters: Option<String>,
    /// More headers refused when sent twice or with disagreeing values
    /// (`content-type`, `content-length`, `host`, `x-request-id` always).
    #[serde(default)]
    pub single_valued: Vec<String>,
}

/// The audit trail (public API, see the README).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    /// Routes holding personal data: every decision on them is recorded.
    #[serde(default)]
    pub personal_data: Vec<RawPersonalData>,
    /// Share of allowed requests on other routes to record (default 1).
    #[serde(default)]
    pub sample_allows: Option<f64>,
    #[serde(default)]
    pub mask: RawMask,
    /// Extra labels on every record.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// An HTTP collector for the records, through an Envoy cluster.
    #[serde(default)]
    pub collector: Option<RawCollector>,
    /// A webhook for alerts (suspensions), through an Envoy cluster.
    #[serde(default)]
    pub alerts: Option<RawWebhook>,
    /// Sign the chain head with Ed25519 at an interval.
    #[serde(default)]
    pub signing: Option<RawSigning>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSigning {
    /// The 32-byte Ed25519 private key (seed), base64.
    pub private_key: String,
    /// Names the key in checkpoints (default: a digest of the public key).
    #[serde(default)]
    pub key_id: Option<String>,
    /// Seconds between signed heads (default 60).
    #[serde(default)]
    pub interval_seconds: Option<u64>,
}

/// Where records are shipped, in OPA's decision-log upload format. It
/// repeats [`RawWebhook`]'s fields: serde's `flatten` would lose
/// `deny_unknown_fields`, and a typo must fail the load.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCollector {
    pub cluster: String,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub authority: Option<String>,
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Records per upload (default 100).
    #[serde(default)]
    pub batch_max: Option<usize>,
    /// When true, personal-data routes fail closed (503) while the collector
    /// is unreachable.
    #[serde(default)]
    pub required: bool,
}

/// An HTTP endpoint reached through an Envoy cluster.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebhook {
    pub cluster: String,
    #[serde(default)]
    pub path: Option<String>,
    /// `:authority` of the call (default: the cluster name).
    #[serde(default)]
    pub authority: Option<String>,
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Alert when one identity is denied this often.
    #[serde(default)]
    pub denial_spike: Option<RawDenialSpike>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDenialSpike {
    pub count: u64,
    pub period_seconds: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPersonalData {
    pub path_prefix: String,
    #[serde(default)]
    pub methods: Vec<String>,
    /// The data category, e.g. `customer_pii`.
    pub category: String,
}

/// What to keep out of audit records, on top of what never goes in.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMask {
    /// Header names whose values are erased.
    #[serde(default)]
    pub headers: Vec<String>,
    /// Query parameter names whose values are masked.
    #[serde(default)]
    pub query_params: Vec<String>,
    /// JSON pointers into the record (`/input/...`) to erase.
    #[serde(default)]
    pub paths: Vec<String>,
}

/// A per-identity limit on matching requests (public API, see the README).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    pub name: String,
    #[serde(rename = "match")]
    pub matcher: RawMatch,
    /// The claim naming the caller; anonymous callers are keyed by peer address.
    #[serde(default = "default_key")]
    pub key: String,
    #[serde(default)]
    pub requests: Option<RawRequests>,
    #[serde(default)]
    pub records: Option<RawRecords>,
    #[serde(default)]
    pub max_page_size: Option<RawPageSize>,
    #[serde(default)]
    pub suspend_seconds: u64,
    /// How many identities the rule tracks at once (bounds shared memory).
    #[serde(default)]
    pub max_identities: Option<u32>,
    /// Fleet-wide budgets: also count the limit in a rate limit service
    /// shared by every sidecar (see `ratelimit::global`).
    #[serde(default)]
    pub global: Option<RawGlobal>,
}

/// A rule's fleet-wide mode: its budgets are charged to an Envoy rate limit
/// service (`ShouldRateLimit`, gRPC) shared by every sidecar (public API).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGlobal {
    /// The Envoy cluster of the rate limit service (gRPC, so HTTP/2).
    pub cluster: String,
    /// The service's configuration domain (default `palisade`).
    #[serde(default)]
    pub domain: Option<String>,
    /// How long a request waits for the service's answer, 1 to 1000 ms
    /// (default 20).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// When the service fails: `deny` (503 `rate_limit_unavailable`) or
    /// `local` (this process's limits alone). Default: `deny` for a rule
    /// with a `records` budget, else `local`.
    #[serde(default)]
    pub on_failure: Option<String>,
    /// Base64 secret of at least 32 bytes, the same on every sidecar:
    /// identities reach the service only as keyed hashes under it.
    pub identity_key: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMatch {
    pub path_prefix: String,
    #[serde(default)]
    pub methods: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRequests {
    pub limit: u32,
    pub period_seconds: u64,
    #[serde(default)]
    pub burst: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRecords {
    pub limit: u64,
    pub period_seconds: u64,
    pub count: RawCount,
}

/// How records are counted in a response.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum RawCount {
    /// JSON pointer to the array of records; `""` is the body itself.
    JsonArray(String),
    /// Newline-delimited JSON: one record per line.
    Ndjson(bool),
    /// A count the upstream reports in this response header.
    Header(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPageSize {
    pub param: String,
    pub max: u64,
}

fn default_key() -> String {
    "sub".into()
}

/// `enforce` applies denials; `dry_run` computes and logs them but forwards the request.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Enforce,
    DryRun,
}

/// One trusted token issuer.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    pub name: String,
    pub issuer: String,
    pub audiences: Vec<String>,
    pub algorithms: Vec<String>,
    /// Inline keys; or `remote_jwks` (exactly one of the two).
    #[serde(default)]
    pub jwks: Option<RawJwks>,
    #[serde(default)]
    pub remote_jwks: Option<RawRemoteJwks>,
    #[serde(default = "default_leeway")]
    pub leeway_seconds: u64,
    #[serde(default = "default_max_lifetime")]
    pub max_lifetime_seconds: u64,
    #[serde(default = "default_from_headers")]
    pub from_headers: Vec<RawHeaderSource>,
}

/// An RFC 7517 JWK Set. The keys themselves are parsed by [`crate::jwks`],
/// which follows RFC 7517 §4 in ignoring JWK members it does not know.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJwks {
    pub keys: Vec<serde_json::Value>,
}

/// A JWKS fetched through an Envoy cluster (public API, see the README).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRemoteJwks {
    pub cluster: String,
    /// e.g. `/.well-known/jwks.json`.
    pub path: String,
    /// `:authority` of the fetch (default: the cluster name).
    #[serde(default)]
    pub authority: Option<String>,
    /// Seconds a fetched set is used before it is fetched again (default 300).
    #[serde(default)]
    pub cache_seconds: Option<u64>,
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// `unavailable` (503, default) or `deny` (401) while no keys are held.
    #[serde(default)]
    pub when_unavailable: Option<String>,
}

/// Where a bearer token is read from.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawHeaderSource {
    pub name: String,
    #[serde(default)]
    pub value_prefix: String,
}

/// The Rego policy and the decision to query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    /// Module name → Rego source; or `bundle` (exactly one of the two).
    #[serde(default)]
    pub modules: BTreeMap<String, String>,
    #[serde(default)]
    pub data: Option<serde_json::Value>,
    /// The rule queried, as a Rego reference (`data.envoy.authz.allow`) or
    /// as OPA-Envoy's `path` (`envoy/authz/allow`, the default).
    #[serde(default)]
    pub decision: Option<String>,
    /// `v1` (default, OPA 1.0's syntax) or `v0` (pre-1.0 syntax, as OPA's
    /// `--v0-compatible`), for every module.
    #[serde(default)]
    pub rego_version: Option<String>,
    /// Module name → `v0`/`v1`, overriding `rego_version` for that module.
    #[serde(default)]
    pub module_rego_versions: BTreeMap<String, String>,
    /// An OPA bundle holding the modules and data.
    #[serde(default)]
    pub bundle: Option<RawBundle>,
    /// Milliseconds one evaluation may run before it is stopped and the
    /// request denied (`policy_timeout`); default 50, at most 1000.
    #[serde(default)]
    pub max_eval_ms: Option<u64>,
    /// `interpreter` (default) or `vm` (regorus's register VM, faster; see
    /// `policy::KNOWN_RVM_DIVERGENCES`).
    #[serde(default)]
    pub engine: Option<String>,
}

/// Where an OPA bundle comes from (exactly one of `file`, `inline`,
/// `remote`), and the key its signatures must verify with.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBundle {
    /// A bundle file, read by the process that loads the configuration
    /// (the harness and CLI). Envoy gives Wasm filters no file system: in
    /// Envoy use `inline` or `remote`.
    #[serde(default)]
    pub file: Option<String>,
    /// The bundle's `.tar.gz` bytes, base64.
    #[serde(default)]
    pub inline: Option<String>,
    /// A bundle server, polled through an Envoy cluster.
    #[serde(default)]
    pub remote: Option<RawBundleRemote>,
    /// Verify `.signatures.json` with this key; unsigned or tampered
    /// bundles are then refused.
    #[serde(default)]
    pub signing: Option<RawBundleSigning>,
}

/// A bundle server reached through an Envoy cluster (OPA's bundle service).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBundleRemote {
    pub cluster: String,
    /// e.g. `/bundles/authz.tar.gz`.
    pub path: String,
    /// `:authority` of the fetch (default: the cluster name).
    #[serde(default)]
    pub authority: Option<String>,
    /// Seconds between polls (default 60).
    #[serde(default)]
    pub poll_seconds: Option<u64>,
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

/// OPA's bundle verification config (`keys` + `signing`), for one key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBundleSigning {
    /// PEM public key or certificate; for HS* algorithms, the secret.
    pub key: String,
    /// JWS algorithm of the signatures (default `RS256`).
    #[serde(default)]
    pub algorithm: Option<String>,
    /// The `keyid` the signatures must name, if any.
    #[serde(default)]
    pub key_id: Option<String>,
    /// The `scope` the signatures must carry, if any.
    #[serde(default)]
    pub scope: Option<String>,
}

/// Bounds of the per-VM verified-token cache.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTokenCache {
    pub max_entries: usize,
}

fn default_leeway() -> u64 {
    30
}

fn default_max_lifetime() -> u64 {
    86_400
}

fn default_from_headers() -> Vec<RawHeaderSource> {
    vec![RawHeaderSource {
        name: "authorization".into(),
        value_prefix: "Bearer ".into(),
    }]
}
