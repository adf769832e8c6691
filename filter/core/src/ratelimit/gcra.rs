//! Per-identity request limits: governor's GCRA over host shared data.
//!
//! Envoy runs one VM per worker thread, so a limiter that keeps its state in
//! the VM admits the limit times the number of workers — the bug that got
//! public Wasm rate limiters withdrawn. Here governor's [`StateStore`] is
//! implemented on shared data with compare-and-swap, so the limit is exact
//! per Envoy process. Time comes from the host: the limiter's clock reads a
//! cell the caller sets before each check, and it reads zero at construction
//! so every VM's limiter measures from the Unix epoch and they agree on the
//! stored state.

use super::store::{read_u64, SharedStore};
use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::StateStore;
use governor::{Quota, RateLimiter};
use std::cell::Cell;
use std::num::NonZeroU32;
use std::rc::Rc;
use std::time::Duration;

/// How many compare-and-swap attempts a check makes before it gives up and denies.
pub const MAX_CAS_ATTEMPTS: u32 = 32;

/// The host's clock, as governor reads it: time since the Unix epoch.
#[derive(Debug, Clone, Default)]
pub struct HostClock(Rc<Cell<Duration>>);

impl Clock for HostClock {
    type Instant = Duration;
    fn now(&self) -> Duration {
        self.0.get()
    }
}

/// governor's state store on [`SharedStore`]: the theoretical arrival time
/// per key, as nanoseconds since the epoch, updated by compare-and-swap.
pub struct SharedState<S> {
    store: S,
    /// Set when the CAS attempts ran out during the last check (shared with
    /// the [`RequestLimiter`], since governor does not lend its state back).
    gave_up: Rc<Cell<bool>>,
}

impl<S: SharedStore> StateStore for SharedState<S> {
    type Key = String;

    fn measure_and_replace<T, F, E>(&self, key: &String, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        self.gave_up.set(false);
        let mut last = None;
        for _ in 0..MAX_CAS_ATTEMPTS {
            let Some((bytes, cas)) = self.store.get(key) else {
                // A new key is first created holding no state (without ever
                // overwriting one); the measurement then goes through CAS.
                super::store::create_if_absent(&self.store, key);
                continue;
            };
            let prev = read_u64(&bytes).map(Nanos::from);
            // Limited: nothing to write.
            let (outcome, next) = f(prev)?;
            if self
                .store
                .set(key, &u64::from(next).to_le_bytes(), cas)
                .is_ok()
            {
                return Ok(outcome);
            }
            last = Some(outcome);
        }
        // Out of attempts: the caller must deny, whatever `last` says.
        self.gave_up.set(true);
        match last {
            Some(outcome) => Ok(outcome),
            None => f(None).map(|(t, _)| t),
        }
    }
}

/// The answer to one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Admitted,
    /// Over the limit; retry after this long.
    Limited {
        retry_after: Duration,
    },
    /// Shared data was too contended to update: denied, fail closed.
    Contended,
}

/// One request limit (per identity), shared across the VMs of a process.
pub struct RequestLimiter<S: SharedStore> {
    limiter: RateLimiter<String, SharedState<S>, HostClock, NoOpMiddleware<Duration>>,
    clock: HostClock,
    gave_up: Rc<Cell<bool>>,
    prefix: String,
}

impl<S: SharedStore> RequestLimiter<S> {
    /// `limit` requests per `period`, admitting up to `burst` at once (at least 1).
    /// Keys are prefixed with `prefix` in shared data.
    pub fn new(
        limit: NonZeroU32,
        period: Duration,
        burst: u32,
        store: S,
        prefix: &str,
    ) -> Option<Self> {
        let interval = period.checked_div(limit.get())?;
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(interval)?.allow_burst(burst);
        let clock = HostClock::default(); // zero at construction: measure from the epoch
        let gave_up = Rc::new(Cell::new(false));
        let state = SharedState {
            store,
            gave_up: gave_up.clone(),
        };
        Some(RequestLimiter {
            limiter: RateLimiter::new(quota, state, clock.clone()),
            clock,
            gave_up,
            prefix: prefix.to_owned(),
        })
    }

    /// Counts one request for `identity` at `now` (since the epoch).
    pub fn check(&self, identity: &str, now: Duration) -> Admission {
        self.clock.0.set(now);
        let key = format!("{}{identity}", self.prefix);
        let result = self.limiter.check_key(&key);
        if self.gave_up.get() {
            return Admission::Contended;
        }
        match result {
            Ok(()) => Admission::Admitted,
            Err(not_until) => Admission::Limited {
                retry_after: not_until.wait_time_from(now),
            },
        }
    }
}

#[cfg(test)]
#[path = "gcra_tests.rs"]
mod tests;
