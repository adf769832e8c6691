//! One audit record: OPA's decision-log fields, so OPA log tooling reads
//! it, plus what Palisade knows about the caller, the route and the
//! response.

use super::config::AuditConfig;
use super::mask::{mask_input, mask_query, mask_result};
use serde_json::{json, Map, Value};

/// A policy value as JSON, for the record's `input` and `result`: what
/// serializing it would give, built directly for the common shapes
/// (objects with string keys, arrays, sets, strings), which skips
/// serde's one-key-at-a-time map building.
pub fn to_json(value: &regorus::Value) -> Option<Value> {
    use regorus::Value as R;
    Some(match value {
        R::Null => Value::Null,
        R::Bool(b) => Value::Bool(*b),
        R::String(s) => Value::String(s.to_string()),
        R::Array(items) => Value::Array(items.iter().map(to_json).collect::<Option<_>>()?),
        R::Set(items) => Value::Array(items.iter_sorted().map(to_json).collect::<Option<_>>()?),
        R::Object(fields) if fields.keys().all(|k| matches!(k, R::String(_))) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| match k {
                    R::String(k) => Some((k.to_string(), to_json(v)?)),
                    _ => None,
                })
                .collect::<Option<_>>()?,
        ),
        // Numbers (decimal text), undefined, objects with other keys.
        other => serde_json::to_value(other).ok()?,
    })
}

/// Everything a record says about one request, gathered by the caller.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub decision_id: String,
    /// RFC 3339, as the glue formats the host clock.
    pub timestamp: String,
    /// The policy's decision path in OPA's form, e.g. `envoy/authz/allow`.
    pub decision_path: String,
    /// The policy's input and result as evaluated: turned into JSON only
    /// when the record is written, so a sampled-out allow costs nothing.
    pub input: Option<regorus::Value>,
    pub result: Option<regorus::Value>,
    /// `allow` or `deny`.
    pub decision: &'static str,
    pub reason: String,
    pub detail: Option<String>,
    pub http_status: Option<u16>,
    pub enforced: bool,
    pub subject: Option<String>,
    pub provider: Option<String>,
    pub client_principal: Option<String>,
    pub peer: Option<String>,
    pub method: Option<String>,
    /// The request path as received (its query is masked here).
    pub path: Option<String>,
    pub policy_revision: Option<String>,
    /// Records returned under record budgets, when metered.
    pub records: Option<u64>,
    pub truncated: bool,
    pub latency_us: u64,
    /// Fleet-wide checks whose rate limit service gave no usable answer.
    pub fleet_failures: Vec<FleetFailure>,
    /// Per rule checked fleet-wide, the pseudonym the service knows the
    /// caller by (its Redis keys hold it): joins a refusal to the counters.
    pub fleet_pseudonyms: Vec<(String, String)>,
}

/// A fleet-wide check the rate limit service did not answer usably, and
/// what was decided instead: every such fallback is on the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetFailure {
    pub rule: String,
    /// Why (`rls_timeout`, ...: [`crate::ratelimit::global::RlsFailure::reason`]).
    pub failure: &'static str,
    /// `refused` (503 `rate_limit_unavailable`) or `local_limits` (the
    /// local limits alone decided).
    pub outcome: &'static str,
}

impl Facts {
    /// The data category a policy named in its result object
    /// (`"data_category": "customer_pii"`): it marks personal data as a
    /// route in the config does.
    fn policy_category(&self) -> Option<&str> {
        let regorus::Value::Object(result) = self.result.as_ref()? else {
            return None;
        };
        match result.get(&regorus::Value::from("data_category"))? {
            regorus::Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The record, before it is sealed into the chain.
    pub fn to_record(&self, config: &AuditConfig) -> Map<String, Value> {
        self.clone().into_record(config)
    }

    /// As [`Facts::to_record`], taking the facts (no copy of the input).
    pub fn into_record(self, config: &AuditConfig) -> Map<String, Value> {
        let route = match (&self.method, &self.path) {
            (Some(m), Some(p)) => config.personal_route(m, p),
            _ => None,
        };
        let personal_category = self.policy_category().map(str::to_owned);
        let mut input = self.input.as_ref().and_then(to_json);
        let mut masked = input
            .as_mut()
            .map(|i| mask_input(i, config))
            .unwrap_or_default();
        let mut result = self.result.as_ref().and_then(to_json);
        if let Some(r) = result.as_mut() {
            let m = mask_result(r, config);
            masked.erased.extend(m.erased);
            masked.masked.extend(m.masked);
        }
        let mut labels = Map::new();
        labels.insert("app".into(), "palisade".into());
        labels.insert("id".into(), Value::Null); // the chain id, set when sealed
        labels.insert("version".into(), env!("CARGO_PKG_VERSION").into());
        for (k, v) in &config.labels {
            labels.insert(k.clone(), v.clone().into());
        }
        let request_path = self
            .path
            .as_deref()
            .map(|p| mask_query(p, config).unwrap_or_else(|| p.to_owned()));
        let mut r = json!({
            "event": "decision",
            "decision_id": self.decision_id,
            "timestamp": self.timestamp,
            "path": self.decision_path,
            "labels": labels,
            "input": input,
            "result": result,
            "requested_by": self.peer,
            "decision": self.decision,
            "reason": self.reason,
            "http_status": self.http_status,
            "enforced": self.enforced,
            "dry_run": !self.enforced,
            "subject": self.subject,
            "provider": self.provider,
            "client_principal": self.client_principal,
            "peer": self.peer,
            "method": self.method,
            "request_path": request_path,
            "route": route.map(|r| r.path_prefix.as_str()),
            "category": route.map(|r| r.category.clone()).or(personal_category.clone()),
            "personal_data": route.is_some() || personal_category.is_some(),
            "policy_revision": self.policy_revision,
            "latency_us": self.latency_us,
        });
        let Some(obj) = r.as_object_mut() else {
            return Map::new();
        };
        if let Some(n) = self.records {
            obj.insert("records".into(), n.into());
            obj.insert("truncated".into(), self.truncated.into());
        }
        if let Some(detail) = &self.detail {
            // Error text may quote request values (a token passed to a builtin).
            let detail = super::mask::without_jwts(detail).unwrap_or_else(|| detail.clone());
            obj.insert("detail".into(), detail.into());
        }
        if !self.fleet_pseudonyms.is_empty() {
            let by_rule: Map<String, Value> = self
                .fleet_pseudonyms
                .iter()
                .map(|(rule, p)| (rule.clone(), Value::from(p.as_str())))
                .collect();
            obj.insert("fleet_pseudonyms".into(), by_rule.into());
        }
        if !self.fleet_failures.is_empty() {
            let failures: Vec<Value> = self
                .fleet_failures
                .iter()
                .map(|f| json!({"rule": f.rule, "failure": f.failure, "outcome": f.outcome}))
                .collect();
            obj.insert("rate_limit_service_failures".into(), failures.into());
        }
        if !masked.erased.is_empty() {
            obj.insert("erased".into(), masked.erased.into());
        }
        if !masked.masked.is_empty() {
            obj.insert("masked".into(), masked.masked.into());
        }
        std::mem::take(obj)
    }

    /// True if this decision must be recorded: every denial, every
    /// decision on a personal-data route, and the configured share of the
    /// other allows.
    pub fn must_record(&self, config: &AuditConfig) -> bool {
        let personal = self.policy_category().is_some()
            || match (&self.method, &self.path) {
                (Some(m), Some(p)) => config.personal_route(m, p).is_some(),
                _ => false,
            };
        // The sample key mixes in the time: a client that picks its request
        // id (`x-request-id`) cannot pick one that is never recorded.
        let key = format!("{}|{}", self.decision_id, self.timestamp);
        self.decision == "deny"
            || !self.enforced
            || personal
            || !self.fleet_failures.is_empty()
            || config.sampled(&key)
    }
}

#[cfg(test)]
mod to_json_tests {
    use super::to_json;
    use serde_json::json;

    #[test]
    fn values_convert_as_serializing_them_would() {
        let mut set = std::collections::BTreeSet::new();
        set.insert(regorus::Value::from("b"));
        set.insert(regorus::Value::from(2u64));
        let mut odd_keys = std::collections::BTreeMap::new();
        odd_keys.insert(regorus::Value::from(1u64), regorus::Value::from("one"));
        let cases = [
            regorus::Value::from(json!({"a": [1, 2.5, "x", null, true], "b": {"c": {}}, "e": -7})),
            regorus::Value::from(json!(1e300)),
            regorus::Value::from(set),
            regorus::Value::from(odd_keys),
            regorus::Value::Undefined,
            regorus::Value::from(json!({"k": "\u{1F600}\n\"q\""})),
        ];
        for v in cases {
            assert_eq!(to_json(&v), serde_json::to_value(&v).ok(), "{v:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> AuditConfig {
        let raw: crate::config::raw::RawAudit = serde_json::from_value(json!({
            "personal_data": [{"path_prefix": "/api/v1/customers", "category": "customer_pii"}],
            "sample_allows": 0.0,
            "labels": {"env": "test"}
        }))
        .unwrap();
        AuditConfig::compile(Some(&raw), &[]).unwrap()
    }

    fn facts(path: &str, decision: &'static str) -> Facts {
        Facts {
            decision_id: "d1".into(),
            timestamp: "2026-11-29T00:00:00.000Z".into(),
            decision_path: "envoy/authz/allow".into(),
            input: Some(regorus::Value::from(
                json!({"attributes": {"request": {"http": {
                "path": path, "headers": {"authorization": "Bearer eyJ"}}}}}),
            )),
            result: Some(regorus::Value::from(true)),
            decision,
            reason: "allowed".into(),
            enforced: true,
            method: Some("GET".into()),
            path: Some(path.into()),
            records: Some(3),
            ..Facts::default()
        }
    }

    #[test]
    fn a_record_has_opas_fields_and_palisades() {
        let r = facts("/api/v1/customers/42?token=eyJ", "allow").to_record(&config());
        for field in [
            "decision_id",
            "timestamp",
            "path",
            "input",
            "result",
            "labels",
        ] {
            assert!(r.contains_key(field), "{field}");
        }
        assert_eq!(r["path"], "envoy/authz/allow");
        assert_eq!(r["labels"]["env"], "test");
        assert_eq!(r["labels"]["app"], "palisade");
        assert_eq!(r["category"], "customer_pii");
        assert_eq!(r["route"], "/api/v1/customers");
        assert_eq!(r["records"], 3);
        assert_eq!(r["request_path"], "/api/v1/customers/42?token=REDACTED");
        assert!(!Value::Object(r.clone()).to_string().contains("eyJ"));
        assert!(r["erased"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p.as_str().unwrap().ends_with("/authorization")));
    }

    #[test]
    fn a_token_quoted_in_an_error_detail_is_masked() {
        let mut f = facts("/health", "deny");
        f.detail = Some("to_number: invalid \"eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.c2ln\"".into());
        let r = f.to_record(&config());
        assert_eq!(r["detail"], "to_number: invalid \"REDACTED\"");
    }

    #[test]
    fn personal_data_and_denials_are_always_recorded_other_allows_sampled() {
        let c = config();
        assert!(facts("/api/v1/customers", "allow").must_record(&c));
        assert!(facts("/health", "deny").must_record(&c));
        assert!(!facts("/health", "allow").must_record(&c), "sampled at 0");
        let mut dry = facts("/health", "allow");
        dry.enforced = false;
        assert!(dry.must_record(&c), "dry runs are recorded");
        let mut marked = facts("/api/v2/people", "allow");
        marked.result = Some(regorus::Value::from(
            json!({"allowed": true, "data_category": "employee_pii"}),
        ));
        assert!(marked.must_record(&c), "a policy can mark personal data");
        let r = marked.to_record(&c);
        assert_eq!(
            (r["personal_data"].as_bool(), r["category"].as_str()),
            (Some(true), Some("employee_pii"))
        );
    }

    #[test]
    fn a_fleet_fallback_is_always_recorded_and_named() {
        let config = config();
        let mut f = facts("/health", "allow");
        assert!(!f.must_record(&config), "sampled out without it");
        f.fleet_failures.push(FleetFailure {
            rule: "customer-bulk".into(),
            failure: "rls_timeout",
            outcome: "local_limits",
        });
        assert!(f.must_record(&config));
        let r = f.to_record(&config);
        assert_eq!(
            r["rate_limit_service_failures"],
            json!([{"rule": "customer-bulk", "failure": "rls_timeout", "outcome": "local_limits"}])
        );
    }
}
