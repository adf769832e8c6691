//! A policy bundle polled from a bundle server (`policy.bundle.remote`),
//! as OPA's bundle plugin does.
//!
//! The glue fetches through an Envoy cluster and hands each answer here;
//! this module decides when to poll and which policy is in force. Each
//! poll sends the ETag of the bundle held (`If-None-Match`), so an
//! unchanged bundle costs a `304` and no compile. A new bundle is checked
//! (signatures, bounds, roots) and compiled in full before it replaces
//! the one in force, so requests never see a half-loaded policy: one
//! being decided keeps the policy it started with (an `Rc`), the next one
//! gets the new policy. A bundle that fails any check is refused and the
//! last good one keeps serving. Until a first bundle is in, requests are
//! denied with `policy_unavailable` (503): the filter fails closed.

use super::{Policy, PolicyOptions};
use crate::bundle::{self, Verifier};
use std::rc::Rc;
use std::time::Duration;

/// `policy.bundle.remote`, compiled.
#[derive(Debug)]
pub struct RemoteBundle {
    /// The Envoy cluster that reaches the bundle server.
    pub cluster: String,
    pub path: String,
    /// `:authority` of the fetch.
    pub authority: String,
    /// Time between polls.
    pub poll: Duration,
    pub timeout: Duration,
    /// Signatures must verify with this key, when set.
    pub verifier: Option<Verifier>,
    /// The rule queried.
    pub decision: String,
    /// How each fetched bundle is compiled.
    pub options: PolicyOptions,
    /// SHA-256 over everything above: a reloaded configuration with the
    /// same value may keep the bundle this VM holds.
    pub fingerprint: [u8; 32],
}

/// Bundles larger than this are refused unread.
pub const MAX_FETCH_BYTES: usize = bundle::MAX_COMPRESSED_BYTES;

/// The longest wait before retrying a failed poll while no bundle is held.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// A bundle checked and compiled: what decides, and where it came from.
#[derive(Debug)]
pub struct LoadedBundle {
    pub policy: Policy,
    /// The manifest's `revision` (`""` when it has none).
    pub revision: String,
    /// Its signatures were verified against the configured key.
    pub verified: bool,
}

/// Checks and compiles a bundle's bytes.
pub fn compile(
    bytes: &[u8],
    verifier: Option<&Verifier>,
    decision: &str,
    options: &PolicyOptions,
) -> Result<LoadedBundle, String> {
    let read = bundle::read(bytes, verifier, options.rego_version)?;
    let options = PolicyOptions {
        module_versions: read.module_versions.clone(),
        ..options.clone()
    };
    let policy = Policy::compile_with(&read.modules, Some(&read.data), decision, options)
        .map_err(|e| format!("{}: {}", e.field, e.message))?;
    Ok(LoadedBundle {
        policy,
        revision: read.revision,
        verified: read.verified,
    })
}

/// This VM's copy of a remote bundle and its poll schedule.
#[derive(Debug, Default)]
pub struct LiveBundle {
    policy: Option<Rc<Policy>>,
    /// The manifest revision of the bundle in force.
    revision: Option<String>,
    /// The server's ETag for the bundle in force.
    etag: Option<String>,
    next_poll: Duration,
    /// A poll is out until then (its timeout, plus a margin).
    in_flight_until: Option<Duration>,
    failures: u32,
}

/// What an answer to a poll changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Polled {
    /// `304 Not Modified`: the bundle in force is current.
    Unchanged,
    /// A new bundle is in force.
    Installed {
        /// Its manifest revision.
        revision: String,
        /// How the log names what now decides.
        describe: String,
        verified: bool,
    },
}

impl LiveBundle {
    /// The policy in force, if a bundle was ever installed.
    pub fn policy(&self) -> Option<Rc<Policy>> {
        self.policy.clone()
    }

    /// The manifest revision in force.
    pub fn revision(&self) -> Option<&str> {
        self.revision.as_deref()
    }

    /// What a configuration reloaded with the same source keeps: the
    /// bundle in force and its ETag. It polls at once (a `304` when the
    /// bundle is current), so the reload neither refuses requests while it
    /// fetches nor keeps a stale bundle past a poll.
    pub fn carried_over(&self) -> LiveBundle {
        LiveBundle {
            policy: self.policy.clone(),
            revision: self.revision.clone(),
            etag: self.etag.clone(),
            ..LiveBundle::default()
        }
    }

    /// The request headers of a poll, if one is due at `now`; the poll is
    /// then in flight until it is answered or its timeout passes.
    pub fn due(&mut self, source: &RemoteBundle, now: Duration) -> Option<Vec<(String, String)>> {
        match self.in_flight_until {
            Some(until) if now < until => return None,
            // The answer never came (Envoy answers a timed-out call, so
            // this is rare): a failure, retried as one.
            Some(_) => self.failed(source, now),
            None => {}
        }
        if now < self.next_poll {
            return None;
        }
        self.in_flight_until = Some(now + source.timeout + Duration::from_secs(1));
        let mut headers = vec![
            (":method".to_owned(), "GET".to_owned()),
            (":path".to_owned(), source.path.clone()),
            (":authority".to_owned(), source.authority.clone()),
            ("accept".to_owned(), "application/gzip".to_owned()),
        ];
        if let Some(etag) = &self.etag {
            headers.push(("if-none-match".to_owned(), etag.clone()));
        }
        Some(headers)
    }

    /// The poll could not be sent, or got no answer.
    pub fn failed(&mut self, source: &RemoteBundle, now: Duration) {
        self.in_flight_until = None;
        self.failures = self.failures.saturating_add(1);
        self.next_poll = now + self.retry_after(source);
    }

    /// Takes the answer to a poll: `status`, the `etag` header, and the
    /// body. A refused answer keeps the bundle in force and says why.
    pub fn answered(
        &mut self,
        source: &RemoteBundle,
        status: Option<u16>,
        etag: Option<String>,
        body: &[u8],
        now: Duration,
    ) -> Result<Polled, String> {
        self.in_flight_until = None;
        let outcome = match status {
            Some(304) if self.policy.is_some() => Ok(Polled::Unchanged),
            Some(304) => Err("answered 304 Not Modified, but no bundle is held".to_owned()),
            Some(200) => compile(
                body,
                source.verifier.as_ref(),
                &source.decision,
                &source.options,
            )
            .map(|loaded| {
                let polled = Polled::Installed {
                    describe: loaded.policy.describe(),
                    revision: loaded.revision.clone(),
                    verified: loaded.verified,
                };
                self.policy = Some(Rc::new(loaded.policy));
                self.revision = Some(loaded.revision);
                // Without an ETag the next poll fetches the bundle whole.
                self.etag = etag;
                polled
            }),
            Some(other) => Err(format!("answered HTTP {other}")),
            None => Err("answered without a status".to_owned()),
        };
        match &outcome {
            Ok(_) => {
                self.failures = 0;
                self.next_poll = now + source.poll;
            }
            Err(_) => {
                self.failures = self.failures.saturating_add(1);
                self.next_poll = now + self.retry_after(source);
            }
        }
        outcome
    }

    /// After a failure: soon (1, 2, 4 … 30 s) while nothing is held, since
    /// every request is refused until then; else at the usual poll.
    fn retry_after(&self, source: &RemoteBundle) -> Duration {
        if self.policy.is_some() {
            return source.poll;
        }
        let shift = self.failures.saturating_sub(1).min(5);
        Duration::from_secs(1u64 << shift)
            .min(MAX_BACKOFF)
            .min(source.poll)
    }
}

#[cfg(test)]
#[path = "remote_bundle_tests.rs"]
mod tests;
