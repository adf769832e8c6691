//! The request-side limits of one configuration, per VM: which rules a
//! request falls under, and whether it may proceed.
//!
//! Order per matching rule: page size (400), suspension (403), request rate
//! (429). Hammering on past the limit — as many refused requests in one
//! period as the limit allows — suspends the identity when the rule says so.

use super::gcra::{Admission, RequestLimiter};
use super::meter::ResponseMeter;
use super::page;
use super::rule::Rule;
use super::store::SharedStore;
use super::suspend;
use super::table::{Entry, Table};
use crate::request::Request;
use crate::token::verify::VerifiedToken;
use regorus::Value;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

/// Why the limits refused a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitDenial {
    /// The page size parameter is missing its form or over the maximum (400).
    PageSize { rule: String, message: String },
    /// The identity is suspended under this rule (403).
    Suspended { rule: String, until: u64 },
    /// Over the request rate (429).
    RateLimited {
        rule: String,
        retry_after: Duration,
        limit: u32,
        period: Duration,
    },
    /// Shared data too contended to count the request: fail closed (429).
    Contended { rule: String },
    /// The identity is new and the rule tracks as many live identities as
    /// it may: fail closed (503) rather than forget a live budget.
    TableFull { rule: String },
    /// The identity's record budget is spent for this period (429).
    RecordsExhausted { rule: String, retry_after: Duration },
}

impl LimitDenial {
    pub fn reason(&self) -> &'static str {
        match self {
            LimitDenial::PageSize { .. } => "page_size",
            LimitDenial::Suspended { .. } => "suspended",
            LimitDenial::RateLimited { .. } => "rate_limited",
            LimitDenial::Contended { .. } => "rate_limit_contended",
            LimitDenial::TableFull { .. } => "limit_table_full",
            LimitDenial::RecordsExhausted { .. } => "records_exhausted",
        }
    }
}

/// An identity that was just suspended: worth an alert. Each suspension is
/// reported once, by the worker whose compare-and-swap made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suspension {
    pub rule: String,
    pub identity: String,
    /// Seconds since the epoch.
    pub until: u64,
    /// `records_budget_spent` or `request_limit_hammered`.
    pub cause: &'static str,
}

/// One rule with its identity table and request limiter.
struct RuleState {
    rule: Rule,
    table: Table,
    limiter: Option<RequestLimiter<Rc<dyn SharedStore>>>,
}

/// Per-VM limit state for one configuration.
pub struct Limits {
    rules: Vec<RuleState>,
    store: Rc<dyn SharedStore>,
    /// Where the next [`Limits::sweep`] starts, per rule.
    sweep_from: Vec<std::cell::Cell<u32>>,
    /// Suspensions made since the last [`Limits::take_suspensions`].
    suspensions: std::cell::RefCell<Vec<Suspension>>,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits")
            .field("rules", &self.rules.len())
            .finish_non_exhaustive()
    }
}

impl Limits {
    /// Every rule with a request quota gets a limiter; a quota governor
    /// cannot represent was refused when the configuration loaded.
    pub fn new(rules: &[Rule], store: Rc<dyn SharedStore>) -> Limits {
        let salt = if rules.is_empty() {
            [0; 16]
        } else {
            super::salt::process_salt(&*store, super::salt::random_salt)
        };
        let rules: Vec<RuleState> = rules
            .iter()
            .map(|r| {
                let table = Table::for_rule(r).salted(salt);
                let limiter = r.requests.as_ref().and_then(|q| {
                    RequestLimiter::new(q.limit, q.period, q.burst, store.clone(), table.clone())
                });
                RuleState {
                    rule: r.clone(),
                    table,
                    limiter,
                }
            })
            .collect();
        let sweep_from = rules.iter().map(|_| std::cell::Cell::new(0)).collect();
        Limits {
            rules,
            store,
            sweep_from,
            suspensions: std::cell::RefCell::new(Vec::new()),
        }
    }

    /// An empty set (configurations without `rate_limits`).
    pub fn none(store: Rc<dyn SharedStore>) -> Limits {
        Limits::new(&[], store)
    }

    /// True if there are rules (and so tables to sweep).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Checks `request` against every matching rule, counting it. On success
    /// returns `input.usage` (per rule, the identity and what it has spent
    /// and has left, this request included) and a meter for each record
    /// budget the response must be counted against.
    pub fn check(
        &self,
        request: &Request,
        token: Option<&VerifiedToken>,
        now: Duration,
    ) -> Result<(Value, Vec<ResponseMeter>), LimitDenial> {
        let (method, path) = (
            request.headers.text(":method"),
            request.headers.text(":path"),
        );
        let secs = now.as_secs();
        let store = &*self.store;
        let mut usage: BTreeMap<Value, Value> = BTreeMap::new();
        let mut meters = Vec::new();
        for state in &self.rules {
            let rule = &state.rule;
            if !rule.matches(&method, &path) {
                continue;
            }
            let name = || rule.name.clone();
            let identity = rule.identity(request, token);
            if let Some(page) = &rule.page {
                page::check(&path, page).map_err(|e| LimitDenial::PageSize {
                    rule: name(),
                    message: e.0,
                })?;
            }
            let entry = state.table.read(store, &identity);
            if let Some(until) = suspend::suspended_until(&entry, secs) {
                return Err(LimitDenial::Suspended {
                    rule: name(),
                    until,
                });
            }
            if !state.table.has_room(store, &identity, now) {
                return Err(LimitDenial::TableFull { rule: name() });
            }
            if let (Some(limiter), Some(quota)) = (&state.limiter, &rule.requests) {
                match limiter.check(&identity, now) {
                    Admission::Admitted => {}
                    Admission::Contended => return Err(LimitDenial::Contended { rule: name() }),
                    Admission::Full => return Err(LimitDenial::TableFull { rule: name() }),
                    Admission::Limited { retry_after } => {
                        self.strike(state, &identity, quota.limit.get(), now);
                        return Err(LimitDenial::RateLimited {
                            rule: name(),
                            retry_after,
                            limit: quota.limit.get(),
                            period: quota.period,
                        });
                    }
                }
            }
            // Read again: this request is now counted.
            let entry = state.table.read(store, &identity);
            if let Some(budget) = &rule.records {
                let window = state.table.record_window();
                if entry.records.current(window, secs) >= budget.limit {
                    return Err(LimitDenial::RecordsExhausted {
                        rule: name(),
                        retry_after: Duration::from_secs(window - secs % window),
                    });
                }
                meters.push(ResponseMeter::new(
                    &state.table,
                    &rule.name,
                    &identity,
                    budget,
                ));
            }
            usage.insert(
                Value::from(rule.name.as_str()),
                Self::usage(state, &identity, &entry, now),
            );
        }
        Ok((Value::from(usage), meters))
    }

    /// Called when a response was cut at its record budget: suspends the
    /// identity if the rule says so.
    pub fn budget_spent(&self, meter: &ResponseMeter, now: Duration) {
        let Some(state) = self.rules.iter().find(|s| s.rule.name == meter.rule) else {
            return;
        };
        if let Some(suspend_for) = state.rule.suspend {
            let until = now.as_secs().saturating_add(suspend_for.as_secs());
            // Failing to record it changes nothing for this response, which is cut.
            if suspend::suspend(&state.table, &*self.store, &meter.identity, until, now) == Ok(true)
            {
                self.suspended(
                    &state.rule.name,
                    &meter.identity,
                    until,
                    "records_budget_spent",
                );
            }
        }
    }

    /// The suspensions this VM made since the last call, for alerts.
    pub fn take_suspensions(&self) -> Vec<Suspension> {
        self.suspensions
            .try_borrow_mut()
            .map(|mut s| std::mem::take(&mut *s))
            .unwrap_or_default()
    }

    fn suspended(&self, rule: &str, identity: &str, until: u64, cause: &'static str) {
        if let Ok(mut s) = self.suspensions.try_borrow_mut() {
            s.push(Suspension {
                rule: rule.to_owned(),
                identity: identity.to_owned(),
                until,
                cause,
            });
        }
    }

    /// The shared store (for metering responses).
    pub fn store(&self) -> &dyn SharedStore {
        &*self.store
    }

    /// Empties stale entries of up to `budget` buckets, round-robin over
    /// every rule's table, so shared memory is given back between sweeps.
    /// Returns how many entries were dropped.
    pub fn sweep(&self, now: Duration, budget: u32) -> usize {
        let mut dropped = 0;
        for (state, cursor) in self.rules.iter().zip(&self.sweep_from) {
            let count = budget.min(state.table.buckets());
            let from = cursor.get();
            dropped += state.table.sweep(&*self.store, now, from, count);
            cursor.set((from + count) % state.table.buckets());
        }
        dropped
    }

    /// Counts a refused request; as many in one period as the limit allows
    /// suspends, when the rule says so.
    fn strike(&self, state: &RuleState, identity: &str, limit: u32, now: Duration) {
        let Some(suspend_for) = state.rule.suspend else {
            return;
        };
        let secs = now.as_secs();
        let window = state.table.strike_window();
        let until = secs.saturating_add(suspend_for.as_secs());
        // The request is refused whatever happens here.
        let newly = state.table.update(&*self.store, identity, now, |e| {
            let was_suspended = e.suspended_until > secs;
            if e.strikes.add(window, secs, 1) >= u64::from(limit) {
                e.suspended_until = e.suspended_until.max(until);
                return !was_suspended;
            }
            false
        });
        if newly == Ok(true) {
            self.suspended(&state.rule.name, identity, until, "request_limit_hammered");
        }
    }

    /// `input.usage` for one rule: the identity, and per limit what it
    /// allows, what is spent and what remains.
    fn usage(state: &RuleState, identity: &str, entry: &Entry, now: Duration) -> Value {
        let mut u: BTreeMap<Value, Value> = BTreeMap::new();
        u.insert("identity".into(), identity.into());
        if let (Some(q), Some(limiter)) = (&state.rule.requests, &state.limiter) {
            let remaining = limiter.remaining(entry.tat_ns, now);
            let mut r: BTreeMap<Value, Value> = BTreeMap::new();
            r.insert("limit".into(), Value::from(q.limit.get()));
            r.insert("period_seconds".into(), Value::from(q.period.as_secs()));
            r.insert("burst".into(), Value::from(limiter.burst()));
            r.insert("remaining".into(), Value::from(remaining));
            r.insert(
                "spent".into(),
                Value::from(limiter.burst().saturating_sub(remaining)),
            );
            u.insert("requests".into(), Value::from(r));
        }
        if let Some(b) = &state.rule.records {
            let spent = entry
                .records
                .current(state.table.record_window(), now.as_secs());
            let mut r: BTreeMap<Value, Value> = BTreeMap::new();
            r.insert("limit".into(), Value::from(b.limit));
            r.insert("period_seconds".into(), Value::from(b.period.as_secs()));
            r.insert("spent".into(), Value::from(spent));
            r.insert(
                "remaining".into(),
                Value::from(b.limit.saturating_sub(spent)),
            );
            u.insert("records".into(), Value::from(r));
        }
        Value::from(u)
    }
}

#[cfg(test)]
#[path = "limits_tests.rs"]
mod tests;
