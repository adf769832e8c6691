//! Per-identity request limits: governor's GCRA over host shared data.
//!
//! Envoy runs one VM per worker thread, so a limiter that keeps its state in
//! the VM admits the limit times the number of workers — the bug that got
//! public Wasm rate limiters withdrawn. Here governor's [`StateStore`] is
//! implemented on shared data (the rule's identity table) with
//! compare-and-swap, so the limit is exact per Envoy process. Time comes from
//! the host: the limiter's clock reads a cell the caller sets before each
//! check, and it reads zero at construction so every VM's limiter measures
//! from the Unix epoch and they agree on the stored state.

use super::store::SharedStore;
use super::table::{Table, TableError};
use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::StateStore;
use governor::{Quota, RateLimiter};
use std::cell::Cell;
use std::num::NonZeroU32;
use std::rc::Rc;
use std::time::Duration;

/// The host's clock, as governor reads it: time since the Unix epoch.
#[derive(Debug, Clone, Default)]
pub struct HostClock(Rc<Cell<Duration>>);

impl Clock for HostClock {
    type Instant = Duration;
    fn now(&self) -> Duration {
        self.0.get()
    }
}

/// governor's state store on the rule's identity [`Table`]: the theoretical
/// arrival time of each identity, in its entry, updated by compare-and-swap.
pub struct SharedState<S> {
    store: S,
    table: Table,
    clock: HostClock,
    /// Set when the last check could not update the table (shared with the
    /// [`RequestLimiter`], since governor does not lend its state back).
    failed: Rc<Cell<Option<TableError>>>,
}

impl<S: SharedStore> StateStore for SharedState<S> {
    type Key = String;

    fn measure_and_replace<T, F, E>(&self, identity: &String, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        self.failed.set(None);
        let updated = self
            .table
            .update(&self.store, identity, self.clock.now(), |entry| {
                let prev = (entry.tat_ns != 0).then(|| Nanos::from(entry.tat_ns));
                // Limited: `f` errs and the entry is left as it was.
                f(prev).map(|(outcome, next)| {
                    entry.tat_ns = u64::from(next);
                    outcome
                })
            });
        match updated {
            Ok(result) => result,
            Err(why) => {
                // The caller must deny, whatever this says.
                self.failed.set(Some(why));
                f(None).map(|(outcome, _)| outcome)
            }
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
    /// The identity is new and the table has no room: denied, fail closed.
    Full,
}

/// One request limit (per identity), shared across the VMs of a process.
pub struct RequestLimiter<S: SharedStore> {
    limiter: RateLimiter<String, SharedState<S>, HostClock, NoOpMiddleware<Duration>>,
    clock: HostClock,
    failed: Rc<Cell<Option<TableError>>>,
    /// GCRA emission interval and burst tolerance, for usage reports.
    interval: Duration,
    burst: u32,
}

impl<S: SharedStore> RequestLimiter<S> {
    /// `limit` requests per `period`, admitting up to `burst` at once (at
    /// least 1), with its state in `table`.
    pub fn new(
        limit: NonZeroU32,
        period: Duration,
        burst: u32,
        store: S,
        table: Table,
    ) -> Option<Self> {
        let interval = period.checked_div(limit.get())?;
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(interval)?.allow_burst(burst);
        let clock = HostClock::default(); // zero at construction: measure from the epoch
        let failed = Rc::new(Cell::new(None));
        let state = SharedState {
            store,
            table,
            clock: clock.clone(),
            failed: failed.clone(),
        };
        Some(RequestLimiter {
            limiter: RateLimiter::new(quota, state, clock.clone()),
            clock,
            failed,
            interval,
            burst: burst.get(),
        })
    }

    /// Counts one request for `identity` at `now` (since the epoch).
    pub fn check(&self, identity: &str, now: Duration) -> Admission {
        self.clock.0.set(now);
        let result = self.limiter.check_key(&identity.to_owned());
        match self.failed.get() {
            Some(TableError::Contended) => return Admission::Contended,
            Some(TableError::Full) => return Admission::Full,
            None => {}
        }
        match result {
            Ok(()) => Admission::Admitted,
            Err(not_until) => Admission::Limited {
                retry_after: not_until.wait_time_from(now),
            },
        }
    }

    /// How many requests an identity whose arrival time is `tat_ns` could
    /// still make at `now` without waiting (governor's GCRA: a request is
    /// admitted while its arrival time minus the tolerance is not after now).
    pub fn remaining(&self, tat_ns: u64, now: Duration) -> u32 {
        let t = self.interval.as_nanos();
        let tau = t * u128::from(self.burst - 1);
        let now = now.as_nanos();
        let tat = u128::from(tat_ns).max(now);
        if t == 0 || tat > now + tau {
            return 0;
        }
        let k = (now + tau - tat) / t + 1;
        u32::try_from(k).unwrap_or(u32::MAX).min(self.burst)
    }

    /// The burst: requests an idle identity may make at once.
    pub fn burst(&self) -> u32 {
        self.burst
    }
}

#[cfg(test)]
#[path = "gcra_tests.rs"]
mod tests;
