//! Answers `ShouldRateLimit` with Limitador's Redis storage.
//!
//! Each config limit becomes one Limitador limit in its own namespace
//! (`<domain>/<limit name>`), so the limit this server picked for a
//! descriptor is the only one Limitador can apply to it. Its one variable is
//! the identity key; the descriptor's entries are the values Limitador sees.
//!
//! Redis: every RPC's storage work (connecting included) runs under one
//! deadline (`--redis-timeout-ms`). A storage error or a missed deadline
//! answers UNAVAILABLE and drops the connection, and the next RPC connects
//! afresh, so the server recovers by itself whatever went wrong: a Redis
//! that was killed and restarted, and also one that hung with the TCP
//! connection still open, which `redis`' `ConnectionManager` alone would
//! keep waiting on.

use crate::config::{Charge, Config, LimitConfig};
use crate::proto::rate_limit_response::{rate_limit::Unit, Code, DescriptorStatus, RateLimit};
use crate::proto::{RateLimitDescriptor, RateLimitRequest, RateLimitResponse};
use limitador::counter::Counter;
use limitador::errors::LimitadorError;
use limitador::limit::{Limit, Namespace};
use limitador::storage::redis::AsyncRedisStorage;
use limitador::AsyncRateLimiter;
use redis::aio::ConnectionManager;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tonic::Status;

/// The largest `hits_addend` accepted (request- or descriptor-level).
/// Larger values are refused with INVALID_ARGUMENT, so a corrupt value
/// cannot overflow a Redis counter.
pub const MAX_HITS: u64 = u32::MAX as u64;

/// One config limit, ready for Limitador.
struct CompiledLimit {
    config: LimitConfig,
    namespace: Namespace,
    limit: Limit,
}

impl CompiledLimit {
    fn new(domain: &str, config: &LimitConfig) -> Self {
        let namespace = format!("{domain}/{}", config.name);
        let max_value = i64::try_from(config.max_value).unwrap_or(i64::MAX);
        let mut limit = Limit::new(
            namespace.as_str(),
            max_value,
            config.seconds,
            Vec::<String>::new(),
            config.identity.iter().cloned(),
        );
        limit.set_name(config.name.clone());
        Self {
            config: config.clone(),
            namespace: namespace.as_str().into(),
            limit,
        }
    }

    fn matches(&self, entries: &HashMap<String, String>) -> bool {
        self.config
            .match_entries
            .iter()
            .all(|(k, v)| entries.get(k) == Some(v))
            && self
                .config
                .identity
                .as_ref()
                .is_none_or(|k| entries.contains_key(k))
    }

    fn current_limit(&self) -> RateLimit {
        RateLimit {
            name: self.config.name.clone(),
            requests_per_unit: saturate_u32(self.config.max_value),
            unit: unit_for(self.config.seconds) as i32,
        }
    }
}

fn saturate_u32(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// Envoy's unit for a window, when it is exactly one; UNKNOWN otherwise
/// (e.g. a 300 s window).
fn unit_for(seconds: u64) -> Unit {
    match seconds {
        1 => Unit::Second,
        60 => Unit::Minute,
        3_600 => Unit::Hour,
        86_400 => Unit::Day,
        604_800 => Unit::Week,
        _ => Unit::Unknown,
    }
}

/// One descriptor, validated: its limit (if any matched), its entries (the
/// values Limitador sees; the first entry of a key wins) and its hits.
struct Planned<'a> {
    limit: Option<&'a CompiledLimit>,
    values: HashMap<String, String>,
    hits: u64,
}

/// What went wrong with the storage, for the log line and the UNAVAILABLE.
enum StorageFailure {
    Error(String),
    Timeout,
}

/// Connection settings.
#[derive(Debug, Clone)]
pub struct StorageOptions {
    /// `redis://host:port[/db]`.
    pub redis_url: String,
    /// The deadline for one RPC's storage work.
    pub timeout: Duration,
}

/// The service's state: the compiled limits and the (re)connectable limiter.
pub struct RateLimiter {
    domain: String,
    limits: Vec<CompiledLimit>,
    options: StorageOptions,
    client: redis::Client,
    current: Mutex<Option<Arc<AsyncRateLimiter>>>,
    connecting: tokio::sync::Mutex<()>,
}

impl RateLimiter {
    /// Compiles the config; does not connect (see [`RateLimiter::connect_now`]).
    pub fn new(config: &Config, options: StorageOptions) -> Result<Self, String> {
        let client = redis::Client::open(options.redis_url.as_str())
            .map_err(|e| format!("--redis {:?}: {e}", options.redis_url))?;
        let limits = config
            .limits
            .iter()
            .map(|l| CompiledLimit::new(&config.domain, l))
            .collect();
        Ok(Self {
            domain: config.domain.clone(),
            limits,
            options,
            client,
            current: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
        })
    }

    /// Connects to Redis within `deadline`, for the startup log line. A
    /// failure is not fatal: every RPC tries again.
    pub async fn connect_now(&self, deadline: Duration) -> Result<(), String> {
        match tokio::time::timeout(deadline, self.limiter()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(format!("no answer within {} ms", deadline.as_millis())),
        }
    }

    fn slot(&self) -> MutexGuard<'_, Option<Arc<AsyncRateLimiter>>> {
        // Nothing panics while holding it; a poisoned lock still holds a
        // valid Option.
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The connected limiter, connecting first if there is none.
    async fn limiter(&self) -> Result<Arc<AsyncRateLimiter>, String> {
        if let Some(l) = self.slot().as_ref() {
            return Ok(Arc::clone(l));
        }
        // One connection attempt at a time; the others wait for it (each
        // under its own RPC deadline).
        let _gate = self.connecting.lock().await;
        if let Some(l) = self.slot().as_ref() {
            return Ok(Arc::clone(l));
        }
        let limiter = Arc::new(self.connect().await?);
        *self.slot() = Some(Arc::clone(&limiter));
        eprintln!(
            "palisade-rls: connected to redis {}",
            self.options.redis_url
        );
        Ok(limiter)
    }

    async fn connect(&self) -> Result<AsyncRateLimiter, String> {
        // No retries inside the manager (0): the RPC deadline bounds every
        // attempt, and the next RPC makes the next one. (2 and 100 are the
        // backoff's base and factor, unused without retries.)
        let manager = ConnectionManager::new_with_backoff_and_timeouts(
            self.client.clone(),
            2,
            100,
            0,
            self.options.timeout,
            self.options.timeout,
        )
        .await
        .map_err(|e| format!("connecting to redis {}: {e}", self.options.redis_url))?;
        let storage = AsyncRedisStorage::new_with_conn_manager(manager);
        let limiter = AsyncRateLimiter::new_with_storage(Box::new(storage));
        for l in &self.limits {
            limiter.add_limit(l.limit.clone());
        }
        Ok(limiter)
    }

    /// Forgets `limiter` (if it is still the current one), so that the next
    /// RPC connects afresh.
    fn discard(&self, limiter: &Arc<AsyncRateLimiter>) {
        let mut slot = self.slot();
        if slot.as_ref().is_some_and(|c| Arc::ptr_eq(c, limiter)) {
            *slot = None;
        }
    }

    /// Answers one `ShouldRateLimit`.
    pub async fn should_rate_limit(
        &self,
        request: &RateLimitRequest,
    ) -> Result<RateLimitResponse, Status> {
        let plan = self.plan(request)?;
        if plan.iter().all(|p| p.limit.is_none()) {
            // Nothing to count: no storage needed.
            return Ok(respond(plan.iter().map(|_| unlimited()).collect()));
        }
        let work = async {
            let limiter = self.limiter().await.map_err(StorageFailure::Error)?;
            let mut statuses = Vec::with_capacity(plan.len());
            for p in &plan {
                let status = match p.limit {
                    None => unlimited(),
                    Some(limit) => match check(&limiter, limit, &p.values, p.hits).await {
                        Ok(status) => status,
                        Err(e) => {
                            self.discard(&limiter);
                            return Err(StorageFailure::Error(describe(&e)));
                        }
                    },
                };
                statuses.push(status);
            }
            Ok(statuses)
        };
        let failure = match tokio::time::timeout(self.options.timeout, work).await {
            Ok(Ok(statuses)) => return Ok(respond(statuses)),
            Ok(Err(failure)) => failure,
            Err(_) => {
                // Whatever connection the deadline cut off may be stuck:
                // start afresh next time.
                let stale = self.slot().take();
                drop(stale);
                StorageFailure::Timeout
            }
        };
        let message = match failure {
            StorageFailure::Error(e) => format!("rate limit storage error: {e}"),
            StorageFailure::Timeout => format!(
                "rate limit storage did not answer within {} ms",
                self.options.timeout.as_millis()
            ),
        };
        eprintln!("palisade-rls: {message}; answered UNAVAILABLE");
        Err(Status::unavailable(message))
    }

    /// Validates the request and picks each descriptor's limit, context and
    /// hits; touches no storage.
    fn plan(&self, request: &RateLimitRequest) -> Result<Vec<Planned<'_>>, Status> {
        if request.domain != self.domain {
            return Err(Status::invalid_argument(format!(
                "unknown domain {:?} (this server serves {:?})",
                request.domain, self.domain
            )));
        }
        if request.descriptors.is_empty() {
            return Err(Status::invalid_argument("no descriptors"));
        }
        let request_hits = match request.hits_addend {
            0 => 1,
            n => u64::from(n),
        };
        request
            .descriptors
            .iter()
            .enumerate()
            .map(|(i, d)| self.plan_descriptor(i, d, request_hits))
            .collect()
    }

    fn plan_descriptor(
        &self,
        i: usize,
        d: &RateLimitDescriptor,
        request_hits: u64,
    ) -> Result<Planned<'_>, Status> {
        if d.limit.is_some() {
            return Err(Status::invalid_argument(format!(
                "descriptors[{i}].limit: limit overrides are not accepted"
            )));
        }
        if d.is_negative_hits {
            return Err(Status::invalid_argument(format!(
                "descriptors[{i}].is_negative_hits: refunds are not supported"
            )));
        }
        let hits = d.hits_addend.unwrap_or(request_hits);
        if hits > MAX_HITS {
            return Err(Status::invalid_argument(format!(
                "descriptors[{i}].hits_addend: {hits} is more than {MAX_HITS}"
            )));
        }
        // The first entry with a key wins.
        let mut values: HashMap<String, String> = HashMap::new();
        for e in &d.entries {
            values
                .entry(e.key.clone())
                .or_insert_with(|| e.value.clone());
        }
        let limit = self.limits.iter().find(|l| l.matches(&values));
        Ok(Planned {
            limit,
            values,
            hits,
        })
    }
}

fn unlimited() -> DescriptorStatus {
    DescriptorStatus {
        code: Code::Ok as i32,
        current_limit: None,
        limit_remaining: 0,
        duration_until_reset: None,
    }
}

fn respond(statuses: Vec<DescriptorStatus>) -> RateLimitResponse {
    let over = statuses.iter().any(|s| s.code == Code::OverLimit as i32);
    RateLimitResponse {
        overall_code: if over { Code::OverLimit } else { Code::Ok } as i32,
        statuses,
    }
}

/// Checks and charges one descriptor against its limit.
async fn check(
    limiter: &AsyncRateLimiter,
    limit: &CompiledLimit,
    values: &HashMap<String, String>,
    hits: u64,
) -> Result<DescriptorStatus, LimitadorError> {
    let delta = i64::try_from(hits).unwrap_or(i64::MAX);
    let ns = &limit.namespace;
    // `left`: what the window has left after this request.
    let (limited, left, counter) = match limit.config.charge {
        Charge::WhenAllowed => {
            // Limitador's check-and-update. The counter's `remaining` is
            // `max - (count + hits)`, whether or not it added the hits.
            let r = limiter
                .check_rate_limited_and_update(ns, values, delta, true)
                .await?;
            let counter = r.counters.into_iter().next();
            let remaining = counter.as_ref().and_then(Counter::remaining).unwrap_or(0);
            // Refused: nothing was added, so what was left before is still left.
            let left = if r.limited {
                remaining.saturating_add(delta)
            } else {
                remaining
            };
            (r.limited, left, counter)
        }
        Charge::Always => {
            // Two steps, not atomic: see README.md ("charge"). The check is a
            // zero-hit check-and-update, which reads the count and the TTL;
            // then the hits are added whatever it said.
            let r = limiter
                .check_rate_limited_and_update(ns, values, 0, true)
                .await?;
            limiter.update_counters(ns, values, delta).await?;
            let counter = r.counters.into_iter().next();
            let before = counter.as_ref().and_then(Counter::remaining).unwrap_or(0);
            let after = before.saturating_sub(delta);
            (after < 0, after, counter)
        }
    };
    Ok(DescriptorStatus {
        code: if limited { Code::OverLimit } else { Code::Ok } as i32,
        current_limit: Some(limit.current_limit()),
        limit_remaining: u32::try_from(left.max(0)).unwrap_or(u32::MAX),
        duration_until_reset: counter.as_ref().and_then(Counter::expires_in).map(|d| {
            crate::proto::Duration {
                seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                // Below 1e9, so it fits.
                nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
            }
        }),
    })
}

fn describe(e: &LimitadorError) -> String {
    match e {
        LimitadorError::Storage(msg) => msg.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(unit_for(1), Unit::Second);
        assert_eq!(unit_for(3600), Unit::Hour);
        assert_eq!(unit_for(300), Unit::Unknown);
    }
}
