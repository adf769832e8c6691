//! Keys fetched from a provider's JWKS endpoint (`remote_jwks`).
//!
//! The glue fetches through an Envoy cluster and hands the answer here; this
//! module decides when to fetch and keeps the keys. Fetches are scheduled,
//! never on the request path: every `cache_seconds`, at once while a
//! provider has no keys (backing off 1, 2, 4 … 60 s after failures), and
//! when a token names a `kid` the set does not hold — at most once a
//! minute, so a flood of made-up `kid`s cannot turn into a flood of fetches.
//! A failed or unusable fetch keeps the keys already held: an IdP outage or
//! a bad response never leaves a provider without keys it had.

use super::verify::Provider;
use crate::jwks::{self, VerificationKey};
use serde_json::Value;
use std::cell::Cell;
use std::time::Duration;

/// A provider's `remote_jwks`, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteJwks {
    /// The Envoy cluster that reaches the IdP.
    pub cluster: String,
    pub path: String,
    /// `:authority` of the fetch.
    pub authority: String,
    /// How long a fetched set is used before it is fetched again.
    pub refresh: Duration,
    pub timeout: Duration,
    /// What a request with a token gets while no keys are held.
    pub when_unavailable: Unavailable,
}

/// The answer to a token that cannot be checked because no keys are held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    /// 401 `token_keys_unavailable`.
    Deny,
    /// 503 `token_keys_unavailable`, with `Retry-After` (the default).
    Retry,
}

/// The fewest seconds between fetches asked for by unknown `kid`s.
pub const UNKNOWN_KID_INTERVAL: Duration = Duration::from_secs(60);

/// The longest wait before retrying a failed fetch.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// One remote provider's keys and fetch schedule.
#[derive(Debug, Default)]
struct Slot {
    keys: Option<Vec<VerificationKey>>,
    /// SHA-256 of the installed keys' JWKs: a key replaced under the same
    /// `kid` is a change too.
    fingerprint: Option<[u8; 32]>,
    /// When the next scheduled fetch is due.
    next_fetch: Duration,
    /// A fetch is out until then (its timeout, plus a margin).
    in_flight_until: Option<Duration>,
    last_kid_fetch: Option<Duration>,
    failures: u32,
    /// A token named a `kid` the set lacks (set while verifying).
    kid_wanted: Cell<bool>,
}

/// This VM's remote key sets, one slot per provider (`None` for providers
/// with inline keys).
#[derive(Debug, Default)]
pub struct RemoteKeys {
    slots: Vec<Option<Slot>>,
}

/// What a fetch changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    /// Keys now held.
    pub keys: usize,
    /// The keys differ from the set before (any key added, removed or
    /// replaced, `kid` or not): cached verifications made with the old set
    /// should be dropped.
    pub changed: bool,
    /// Keys of the answer that were skipped (not for an allowed algorithm).
    pub skipped: Vec<String>,
}

impl RemoteKeys {
    /// Empty slots for `providers`' remote sets; nothing fetched yet.
    pub fn new(providers: &[Provider]) -> RemoteKeys {
        RemoteKeys {
            slots: providers
                .iter()
                .map(|p| p.remote.as_ref().map(|_| Slot::default()))
                .collect(),
        }
    }

    /// The keys held for provider `i`, if it is remote and has some.
    pub fn keys(&self, i: usize) -> Option<&[VerificationKey]> {
        self.slot(i)?.keys.as_deref()
    }

    /// A token for provider `i` named a `kid` its set lacks.
    pub fn note_unknown_kid(&self, i: usize) {
        if let Some(slot) = self.slot(i) {
            slot.kid_wanted.set(true);
        }
    }

    /// The providers whose set should be fetched now; each is marked in
    /// flight until its answer comes (or its timeout passes).
    pub fn due(&mut self, providers: &[Provider], now: Duration) -> Vec<usize> {
        let mut due = Vec::new();
        for (i, (slot, provider)) in self.slots.iter_mut().zip(providers).enumerate() {
            let (Some(slot), Some(remote)) = (slot.as_mut(), provider.remote.as_ref()) else {
                continue;
            };
            if slot.in_flight_until.is_some_and(|until| now < until) {
                continue;
            }
            let by_kid = slot.kid_wanted.get()
                && slot
                    .last_kid_fetch
                    .is_none_or(|last| now.saturating_sub(last) >= UNKNOWN_KID_INTERVAL);
            if by_kid {
                slot.last_kid_fetch = Some(now);
            }
            slot.kid_wanted.set(false);
            if by_kid || now >= slot.next_fetch {
                slot.in_flight_until = Some(
                    now.saturating_add(remote.timeout)
                        .saturating_add(Duration::from_secs(1)),
                );
                due.push(i);
            }
        }
        due
    }

    /// The fetch for provider `i` failed before its answer could be read
    /// (the host refused to send it, or the answer was too large): retry
    /// after a backoff, keeping the keys held.
    pub fn failed(&mut self, i: usize, now: Duration) {
        if let Some(slot) = self.slot_mut(i) {
            slot.in_flight_until = None;
            slot.failures = slot.failures.saturating_add(1);
            slot.next_fetch = now.saturating_add(backoff(slot.failures));
        }
    }

    /// The fetch for provider `i` came back with `status` (`None`: no
    /// answer) and `body`. Installs the keys, or keeps the old ones and
    /// says why not.
    pub fn fetched(
        &mut self,
        i: usize,
        provider: &Provider,
        status: Option<u16>,
        body: &[u8],
        now: Duration,
    ) -> Result<Installed, String> {
        let Some(remote) = provider.remote.as_ref() else {
            return Err("the provider has no remote_jwks".into());
        };
        let outcome = parse(provider, status, body);
        let Some(slot) = self.slot_mut(i) else {
            return Err("no such remote provider".into());
        };
        slot.in_flight_until = None;
        match outcome {
            Ok((keys, skipped, fingerprint)) => {
                let changed = slot.fingerprint != Some(fingerprint);
                let count = keys.len();
                slot.keys = Some(keys);
                slot.fingerprint = Some(fingerprint);
                slot.failures = 0;
                slot.next_fetch = now.saturating_add(remote.refresh);
                Ok(Installed {
                    keys: count,
                    changed,
                    skipped,
                })
            }
            Err(e) => {
                slot.failures = slot.failures.saturating_add(1);
                slot.next_fetch = now.saturating_add(backoff(slot.failures).min(remote.refresh));
                Err(e)
            }
        }
    }

    fn slot(&self, i: usize) -> Option<&Slot> {
        self.slots.get(i)?.as_ref()
    }

    fn slot_mut(&mut self, i: usize) -> Option<&mut Slot> {
        self.slots.get_mut(i)?.as_mut()
    }
}

/// A JWKS answer that passed: its keys, the warnings for keys skipped, and
/// the fingerprint of what it holds.
type Parsed = (Vec<VerificationKey>, Vec<String>, [u8; 32]);

/// A JWKS answer, held to the rules of inline keys.
fn parse(provider: &Provider, status: Option<u16>, body: &[u8]) -> Result<Parsed, String> {
    match status {
        Some(200) => {}
        Some(s) => return Err(format!("the JWKS endpoint answered {s}")),
        None => return Err("the JWKS endpoint did not answer (timeout or no connection)".into()),
    }
    let doc: Value =
        serde_json::from_slice(body).map_err(|e| format!("the JWKS is not JSON: {e}"))?;
    let Some(keys) = doc.get("keys").and_then(Value::as_array) else {
        return Err("the JWKS has no `keys` array".into());
    };
    let (keys, skipped) = jwks::load_keys(keys, &provider.algorithms, "keys")?;
    if keys.is_empty() {
        return Err("the JWKS holds no usable signing key".into());
    }
    Ok((keys, skipped, fingerprint(&doc["keys"])))
}

/// SHA-256 over the JWKs as JSON (serde_json writes object members sorted,
/// so the same keys in another member order are the same set).
fn fingerprint(jwks: &Value) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(jwks.to_string().as_bytes()).into()
}

/// 1, 2, 4 … seconds, at most [`MAX_BACKOFF`].
fn backoff(failures: u32) -> Duration {
    let secs = 1u64 << failures.saturating_sub(1).min(6);
    Duration::from_secs(secs).min(MAX_BACKOFF)
}

#[cfg(test)]
#[path = "remote_tests.rs"]
mod tests;
