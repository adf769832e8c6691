//! The limits file (`--config limits.json`).
//!
//! ```json
//! {
//!   "domain": "palisade",
//!   "limits": [
//!     {
//!       "name": "customer-bulk-records",
//!       "match": { "limit": "customer-bulk", "kind": "records" },
//!       "identity": "identity",
//!       "max_value": 100000,
//!       "seconds": 3600,
//!       "charge": "always"
//!     }
//!   ]
//! }
//! ```
//!
//! A descriptor matches a limit when it has every `match` entry (same key,
//! same value) and, when the limit names an `identity` key, an entry with
//! that key; other entries are ignored. Limits are tried in file order and
//! the first that matches applies; a descriptor that matches none is
//! unlimited. A limit that could never apply because an earlier one takes
//! every descriptor it matches is a config error.

use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::Path;

/// Counters are Redis integers (signed 64-bit): a limit above this could
/// never be reached.
pub const MAX_LIMIT_VALUE: u64 = i64::MAX as u64;

/// The whole file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The `domain` every request must carry.
    pub domain: String,
    /// Tried in order; the first that matches a descriptor applies.
    pub limits: Vec<LimitConfig>,
}

/// One limit.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitConfig {
    /// Unique in the file; reported as `current_limit.name` and part of the
    /// Redis key, so renaming a limit starts its counters afresh.
    pub name: String,
    /// Entries a descriptor must carry, key to value.
    #[serde(rename = "match", default)]
    pub match_entries: BTreeMap<String, String>,
    /// The descriptor entry whose value selects the counter (one counter per
    /// value, e.g. per caller). Absent: one counter shared by every matching
    /// descriptor.
    #[serde(default)]
    pub identity: Option<String>,
    /// Hits allowed per window.
    pub max_value: u64,
    /// Window length in seconds (a fixed window that starts with the first
    /// hit on a counter).
    pub seconds: u64,
    /// Whether an over-limit request's hits are counted.
    #[serde(default)]
    pub charge: Charge,
}

/// How a limit counts hits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Charge {
    /// Limitador's check-and-update: hits are counted only when the answer
    /// is OK; an over-limit request leaves the counter as it was.
    #[default]
    WhenAllowed,
    /// Hits are counted whatever the answer, OVER_LIMIT included (a check,
    /// then an unconditional update: two steps, not atomic).
    Always,
}

/// A config that could not be read or is not valid; the message names the
/// field (`limits[1].seconds: ...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
        Self::parse(&text).map_err(|e| ConfigError(format!("{}: {}", path.display(), e.0)))
    }

    /// Parses and validates a config text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if path == "." {
                ConfigError(inner.to_string())
            } else {
                ConfigError(format!("{path}: {inner}"))
            }
        })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.domain.is_empty() {
            return Err(ConfigError("domain: must not be empty".into()));
        }
        if self.limits.is_empty() {
            return Err(ConfigError("limits: must list at least one limit".into()));
        }
        let mut names = HashSet::new();
        for (i, limit) in self.limits.iter().enumerate() {
            let at = |field: &str, msg: &str| ConfigError(format!("limits[{i}].{field}: {msg}"));
            if limit.name.is_empty() {
                return Err(at("name", "must not be empty"));
            }
            if !names.insert(limit.name.as_str()) {
                return Err(at(
                    "name",
                    &format!("{:?} is already the name of an earlier limit", limit.name),
                ));
            }
            for (key, value) in &limit.match_entries {
                if key.is_empty() || value.is_empty() {
                    return Err(at(
                        "match",
                        "keys and values must not be empty (Envoy never sends empty ones)",
                    ));
                }
            }
            if let Some(identity) = &limit.identity {
                if identity.is_empty() {
                    return Err(at("identity", "must not be empty"));
                }
                if limit.match_entries.contains_key(identity) {
                    return Err(at(
                        "identity",
                        &format!(
                            "{identity:?} is also a `match` key: a fixed value is not an identity"
                        ),
                    ));
                }
            }
            if limit.max_value > MAX_LIMIT_VALUE {
                return Err(at(
                    "max_value",
                    &format!(
                        "must be at most {MAX_LIMIT_VALUE} (Redis counters are signed 64-bit)"
                    ),
                ));
            }
            if limit.seconds == 0 {
                return Err(at("seconds", "must be at least 1"));
            }
            if let Some(j) = (0..i).find(|&j| shadows(&self.limits[j], limit)) {
                return Err(at(
                    "match",
                    &format!(
                        "this limit can never apply: limits[{j}] ({:?}) comes first and matches every descriptor it matches",
                        self.limits[j].name
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Whether every descriptor that matches `later` also matches `earlier`.
fn shadows(earlier: &LimitConfig, later: &LimitConfig) -> bool {
    let entries_covered = earlier
        .match_entries
        .iter()
        .all(|(k, v)| later.match_entries.get(k) == Some(v));
    let identity_covered = match &earlier.identity {
        None => true,
        Some(key) => {
            later.identity.as_deref() == Some(key.as_str()) || later.match_entries.contains_key(key)
        }
    };
    entries_covered && identity_covered
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{
        "domain": "palisade",
        "limits": [
            {"name": "bulk", "match": {"limit": "customer-bulk", "kind": "records"},
             "identity": "identity", "max_value": 10, "seconds": 60, "charge": "always"},
            {"name": "reqs", "match": {"limit": "customer-bulk"},
             "identity": "identity", "max_value": 5, "seconds": 1}
        ]
    }"#;

    fn err(text: &str) -> String {
        Config::parse(text).unwrap_err().0
    }

    #[test]
    fn parses_a_good_config_with_defaults() {
        let c = Config::parse(GOOD).unwrap();
        assert_eq!(c.domain, "palisade");
        assert_eq!(c.limits[0].charge, Charge::Always);
        assert_eq!(c.limits[1].charge, Charge::WhenAllowed);
        assert_eq!(c.limits[1].identity.as_deref(), Some("identity"));
    }

    #[test]
    fn the_example_config_parses() {
        let c = Config::parse(include_str!("../limits.example.json")).unwrap();
        assert_eq!(c.limits.len(), 2);
    }

    #[test]
    fn unknown_field_is_named_with_its_path() {
        let text = GOOD.replace("\"max_value\": 5", "\"max_valu\": 5");
        let e = err(&text);
        assert!(e.starts_with("limits[1]"), "{e}");
        assert!(e.contains("unknown field `max_valu`"), "{e}");
    }

    #[test]
    fn bad_charge_is_named() {
        let e = err(&GOOD.replace("\"always\"", "\"sometimes\""));
        assert!(e.starts_with("limits[0].charge"), "{e}");
    }

    #[test]
    fn missing_field_is_named() {
        let e = err(&GOOD.replace("\"seconds\": 1", "\"charge\": \"always\""));
        assert!(e.contains("missing field `seconds`"), "{e}");
    }

    #[test]
    fn validation_errors_name_the_field() {
        assert!(
            err(&GOOD.replace("\"seconds\": 1", "\"seconds\": 0")).starts_with("limits[1].seconds")
        );
        assert!(
            err(&GOOD.replace("\"name\": \"reqs\"", "\"name\": \"bulk\""))
                .starts_with("limits[1].name")
        );
        assert!(err(&GOOD.replace("\"palisade\"", "\"\"")).starts_with("domain"));
        let e = err(&GOOD.replace(
            "\"identity\": \"identity\", \"max_value\": 5",
            "\"identity\": \"limit\", \"max_value\": 5",
        ));
        assert!(e.starts_with("limits[1].identity"), "{e}");
    }

    #[test]
    fn a_shadowed_limit_is_refused() {
        // The general limit first: the specific one could never apply.
        let text = r#"{"domain": "d", "limits": [
            {"name": "general", "match": {"limit": "customer-bulk"}, "identity": "identity", "max_value": 5, "seconds": 1},
            {"name": "specific", "match": {"limit": "customer-bulk", "kind": "records"}, "identity": "identity", "max_value": 5, "seconds": 1}
        ]}"#;
        let e = err(text);
        assert!(e.starts_with("limits[1].match"), "{e}");
        assert!(e.contains("\"general\""), "{e}");
        // Specific first is fine (GOOD).
        Config::parse(GOOD).unwrap();
    }
}
