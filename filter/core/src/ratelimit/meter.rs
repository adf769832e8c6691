//! Record budgets: counting the records a response returns, as it streams,
//! and cutting it where the identity's budget ends.
//!
//! Each chunk's new records are first counted on a copy of the counter, then
//! reserved from the shared budget by compare-and-swap, then let through up
//! to what was granted. Two concurrent exports by one identity therefore
//! share the budget exactly; the client never receives a record past it, not
//! even part of one.

use super::global::Lease;
use super::rule::{CountSpec, RecordBudget};
use super::store::SharedStore;
use super::table::Table;
use crate::records::{CountMode, RecordCounter};
use std::time::Duration;

/// What to do with the response headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderAction {
    /// Let them through unchanged.
    Continue,
    /// Drop `content-length`: the body may be cut short, so it must be chunked.
    DropContentLength,
    /// The upstream reports more records than the budget allows: answer 429
    /// instead (nothing of the body has been sent yet).
    Refuse,
}

/// What to do with one body chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyAction {
    Pass,
    /// Forward only the first `n` bytes of this chunk, and nothing after it.
    Truncate(usize),
}

/// Meters one response against one rule's record budget.
#[derive(Debug, Clone)]
pub struct ResponseMeter {
    pub rule: String,
    pub identity: String,
    table: Table,
    budget: RecordBudget,
    counter: Option<RecordCounter>,
    /// Records let through so far in this body.
    counted: u64,
    cut: bool,
    /// The budget ran out (as opposed to a cut for contention or unreadable data).
    exhausted: bool,
    /// False for responses that are not metered (non-2xx).
    active: bool,
    /// A fleet-wide lease (`global`): no more records than this pass,
    /// whatever the local budget allows.
    lease: Option<Lease>,
    /// The body was cut at a lease that was the rest of the fleet's budget.
    lease_spent: bool,
}

impl ResponseMeter {
    /// A meter charging `identity`'s entry in `table` (the table of `rule`).
    pub fn new(table: &Table, rule: &str, identity: &str, budget: &RecordBudget) -> ResponseMeter {
        let counter = match &budget.count {
            CountSpec::JsonArray(pointer) => RecordCounter::new(CountMode::JsonArray {
                pointer: pointer.clone(),
            })
            .ok(),
            CountSpec::Ndjson => RecordCounter::new(CountMode::Ndjson).ok(),
            CountSpec::Header(_) => None,
        };
        // A body that cannot be counted must not pass (the config check
        // makes this unreachable; it stays closed if that ever changes).
        let uncountable = counter.is_none() && !matches!(budget.count, CountSpec::Header(_));
        ResponseMeter {
            rule: rule.to_owned(),
            identity: identity.to_owned(),
            table: table.clone(),
            budget: budget.clone(),
            counter,
            counted: 0,
            cut: uncountable,
            exhausted: false,
            active: true,
            lease: None,
            lease_spent: false,
        }
    }

    /// Caps what this response may deliver at a fleet-wide lease (see
    /// [`super::global::Lease`]), on top of the local budget.
    pub fn cap(&mut self, lease: Lease) {
        self.lease = Some(match self.lease {
            Some(held) if held.records <= lease.records => held,
            _ => lease,
        });
    }

    /// True if the body was cut at a lease that was all the fleet had
    /// left: the fleet-wide budget is spent, and the identity is suspended
    /// fleet-wide, as [`ResponseMeter::budget_exhausted`] suspends it locally.
    pub fn lease_spent(&self) -> bool {
        self.lease_spent
    }

    /// Of `want` records, how many the lease still admits (all of them
    /// without a lease); notes a lease that ran out.
    fn within_lease(&mut self, want: u64) -> u64 {
        let Some(lease) = self.lease else {
            return want;
        };
        let room = lease.records.saturating_sub(self.counted);
        if want > room {
            self.lease_spent |= lease.budget_bound;
        }
        want.min(room)
    }

    /// True if this response spent the identity's budget (and so may suspend it).
    pub fn budget_exhausted(&self) -> bool {
        self.exhausted
    }

    /// Records charged so far: those let through, and at least one for a
    /// body that passed at all.
    pub fn records(&self) -> u64 {
        self.counted
    }

    /// When the record window ends, from `now`: when a refused caller may
    /// try again.
    pub fn retry_after(&self, now: Duration) -> Duration {
        let window = self.table.record_window();
        Duration::from_secs(window - now.as_secs() % window)
    }

    /// True once the body was cut at the budget (or at malformed data).
    pub fn truncated(&self) -> bool {
        self.cut
    }

    /// Looks at the response headers (`name` lowercase, `:status` included).
    pub fn on_headers<S: SharedStore + ?Sized>(
        &mut self,
        header: impl Fn(&str) -> Option<String>,
        store: &S,
        now: Duration,
    ) -> HeaderAction {
        // Error answers carry no records: not metered.
        if !header(":status").is_some_and(|s| s.starts_with('2')) {
            self.active = false;
            return HeaderAction::Continue;
        }
        match &self.budget.count {
            CountSpec::Header(name) => {
                // Trusted only from the upstream: this is its response header.
                let reported = header(name).and_then(|v| v.trim().parse::<u64>().ok());
                let Some(n) = reported else {
                    // No count to charge: refuse rather than let records through uncounted.
                    self.cut = true;
                    return HeaderAction::Refuse;
                };
                // All or nothing: a refused response delivers no records, so
                // it is charged none; asking past the budget still suspends.
                if self.within_lease(n) < n {
                    self.cut = true;
                    return HeaderAction::Refuse;
                }
                match self.try_reserve_all(store, n, now) {
                    Some(true) => {
                        self.counted = n;
                        HeaderAction::Continue
                    }
                    answer => {
                        self.exhausted = answer.is_some();
                        self.cut = true;
                        HeaderAction::Refuse
                    }
                }
            }
            _ => {
                let encoded = header("content-encoding")
                    .is_some_and(|e| !e.trim().eq_ignore_ascii_case("identity"));
                if encoded {
                    // Compressed records cannot be counted: nothing passes.
                    self.cut = true;
                }
                HeaderAction::DropContentLength
            }
        }
    }

    /// Meters one body chunk.
    pub fn on_body<S: SharedStore + ?Sized>(
        &mut self,
        chunk: &[u8],
        store: &S,
        now: Duration,
    ) -> BodyAction {
        if !self.active {
            return BodyAction::Pass;
        }
        if self.cut {
            return BodyAction::Truncate(0);
        }
        let Some(counter) = self.counter.as_ref() else {
            return BodyAction::Pass; // header-counted: the body was charged already
        };
        // How many records start in this chunk, if all of it went through?
        let mut probe = counter.clone();
        probe.feed(chunk, None);
        if probe.malformed() {
            // Cannot count what cannot be read: stop here, fail closed.
            self.cut = true;
            return BodyAction::Truncate(0);
        }
        // A body is at least one record: a response without the array at the
        // pointer (one customer's record, say) is charged as one, before any
        // of it passes, so reading records one by one is budgeted too. A list
        // spends this unit on its first element.
        let due = if chunk.is_empty() {
            probe.records()
        } else {
            probe.records().max(1)
        };
        let wanted = self.within_lease(due.saturating_sub(self.counted));
        let granted = if wanted == 0 {
            0
        } else {
            match self.try_reserve(store, wanted, now) {
                Some(g) => {
                    self.exhausted |= g < wanted;
                    g
                }
                // Contended: nothing more passes, but the caller is not blamed.
                None => 0,
            }
        };
        let allowed = self.counted + granted;
        if allowed == 0 && !chunk.is_empty() {
            // Not even the first record was granted: nothing passes.
            self.cut = true;
            return BodyAction::Truncate(0);
        }
        let Some(counter) = self.counter.as_mut() else {
            return BodyAction::Pass;
        };
        let fed = counter.feed(chunk, Some(allowed));
        self.counted = allowed;
        match fed.cut_at {
            Some(at) => {
                self.cut = true;
                BodyAction::Truncate(at)
            }
            None => BodyAction::Pass,
        }
    }

    /// Nothing more of this body passes (it could not be read).
    pub fn stop(&mut self) {
        self.cut = true;
    }

    /// Nothing of the response passes after all (another budget refused it):
    /// gives back what this meter charged.
    pub fn refund<S: SharedStore + ?Sized>(&mut self, store: &S, now: Duration) {
        self.give_back(store, self.counted, now);
        self.counted = 0;
        self.cut = true;
        self.exhausted = false;
    }

    /// Another meter cut the chunk that `self` was just fed (as `before`
    /// stood before it) at `kept.len()`: counts only what passed, gives the
    /// rest back, and stops.
    pub fn settle<S: SharedStore + ?Sized>(
        &mut self,
        before: &ResponseMeter,
        kept: &[u8],
        store: &S,
        now: Duration,
    ) {
        let Some(mut counter) = before.counter.clone() else {
            return; // header-counted: charged whole at the headers
        };
        counter.feed(kept, None);
        let passed = if kept.is_empty() && before.counted == 0 {
            0
        } else {
            counter.records().max(1)
        };
        let delivered = passed.max(before.counted).min(self.counted);
        if self.counted > delivered {
            self.give_back(store, self.counted - delivered, now);
            self.exhausted = before.exhausted;
        }
        self.counted = delivered;
        self.counter = Some(counter);
        self.cut = true;
    }

    fn give_back<S: SharedStore + ?Sized>(&self, store: &S, n: u64, now: Duration) {
        if n == 0 {
            return;
        }
        let (window, secs) = (self.table.record_window(), now.as_secs());
        // Best effort: if it cannot be written, the budget errs on the low side.
        let _ = self.table.update(store, &self.identity, now, |e| {
            if e.records.current(window, secs) > 0 {
                e.records.count = e.records.count.saturating_sub(n);
            }
        });
    }

    /// Takes exactly `n` records from the shared budget if that many remain;
    /// `None` if shared data was too contended.
    fn try_reserve_all<S: SharedStore + ?Sized>(
        &self,
        store: &S,
        n: u64,
        now: Duration,
    ) -> Option<bool> {
        let (window, limit, secs) = (self.table.record_window(), self.budget.limit, now.as_secs());
        self.table
            .update(store, &self.identity, now, |e| {
                let fits = e.records.current(window, secs).saturating_add(n) <= limit;
                if fits {
                    e.records.add(window, secs, n);
                }
                fits
            })
            .ok()
    }

    /// Takes up to `want` records from the shared budget; returns how many,
    /// or `None` if shared data was too contended.
    fn try_reserve<S: SharedStore + ?Sized>(
        &self,
        store: &S,
        want: u64,
        now: Duration,
    ) -> Option<u64> {
        let (window, limit, secs) = (self.table.record_window(), self.budget.limit, now.as_secs());
        self.table
            .update(store, &self.identity, now, |e| {
                let grant = want.min(limit.saturating_sub(e.records.current(window, secs)));
                e.records.add(window, secs, grant);
                grant
            })
            .ok()
    }
}

#[cfg(test)]
#[path = "meter_tests.rs"]
mod tests;
