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
use super::store::{add_in_window, read_in_window, SharedStore};
use super::suspend;
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
            LimitDenial::RecordsExhausted { .. } => "records_exhausted",
        }
    }
}

type HostLimiter = RequestLimiter<Rc<dyn SharedStore>>;

/// Per-VM limit state for one configuration.
pub struct Limits {
    rules: Vec<(Rule, Option<HostLimiter>)>,
    store: Rc<dyn SharedStore>,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits")
            .field("rules", &self.rules.len())
            .finish_non_exhaustive()
    }
}

fn strike_key(rule: &str, identity: &str) -> String {
    format!("pal:strike:{rule}:{identity}")
}

/// Shared-data key of the record counter of `identity` under `rule`.
pub fn records_key(rule: &str, identity: &str) -> String {
    format!("pal:rec:{rule}:{identity}")
}

impl Limits {
    /// Every rule with a request quota gets a limiter; a quota governor
    /// cannot represent was refused when the configuration loaded.
    pub fn new(rules: &[Rule], store: Rc<dyn SharedStore>) -> Limits {
        let rules = rules
            .iter()
            .map(|r| {
                let limiter = r.requests.as_ref().and_then(|q| {
                    RequestLimiter::new(
                        q.limit,
                        q.period,
                        q.burst,
                        store.clone(),
                        &format!("pal:gcra:{}:", r.name),
                    )
                });
                (r.clone(), limiter)
            })
            .collect();
        Limits { rules, store }
    }

    /// An empty set (configurations without `rate_limits`).
    pub fn none(store: Rc<dyn SharedStore>) -> Limits {
        Limits {
            rules: Vec::new(),
            store,
        }
    }

    /// Checks `request` against every matching rule, counting it. On success
    /// returns `input.usage` (per rule, the identity and what it has spent)
    /// and a meter for each record budget the response must be counted against.
    pub fn check(
        &self,
        request: &Request,
        token: Option<&VerifiedToken>,
        now: Duration,
    ) -> Result<(Value, Vec<ResponseMeter>), LimitDenial> {
        let text = |name: &str| {
            request
                .headers
                .first(name)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default()
        };
        let (method, path) = (text(":method"), text(":path"));
        let secs = now.as_secs();
        let mut usage: BTreeMap<Value, Value> = BTreeMap::new();
        let mut meters = Vec::new();
        for (rule, limiter) in &self.rules {
            if !rule.matches(&method, &path) {
                continue;
            }
            let identity = rule.identity(request, token);
            if let Some(page) = &rule.page {
                page::check(&path, page).map_err(|e| LimitDenial::PageSize {
                    rule: rule.name.clone(),
                    message: e.0,
                })?;
            }
            if let Some(until) = suspend::suspended_until(&*self.store, &rule.name, &identity, secs)
            {
                return Err(LimitDenial::Suspended {
                    rule: rule.name.clone(),
                    until,
                });
            }
            if let (Some(limiter), Some(quota)) = (limiter, &rule.requests) {
                match limiter.check(&identity, now) {
                    Admission::Admitted => {}
                    Admission::Contended => {
                        return Err(LimitDenial::Contended {
                            rule: rule.name.clone(),
                        })
                    }
                    Admission::Limited { retry_after } => {
                        self.strike(rule, &identity, quota.limit.get(), quota.period, secs);
                        return Err(LimitDenial::RateLimited {
                            rule: rule.name.clone(),
                            retry_after,
                            limit: quota.limit.get(),
                            period: quota.period,
                        });
                    }
                }
            }
            if let Some(budget) = &rule.records {
                if ResponseMeter::exhausted(budget, &*self.store, &rule.name, &identity, secs) {
                    let period = budget.period.as_secs().max(1);
                    return Err(LimitDenial::RecordsExhausted {
                        rule: rule.name.clone(),
                        retry_after: Duration::from_secs(period - secs % period),
                    });
                }
                meters.push(ResponseMeter::new(&rule.name, &identity, budget));
            }
            usage.insert(
                Value::from(rule.name.as_str()),
                self.usage(rule, &identity, secs),
            );
        }
        Ok((Value::from(usage), meters))
    }

    /// Called when a response was cut at its record budget: suspends the
    /// identity if the rule says so.
    pub fn budget_spent(&self, meter: &ResponseMeter, now: Duration) {
        let rule = self
            .rules
            .iter()
            .map(|(r, _)| r)
            .find(|r| r.name == meter.rule);
        if let Some(suspend_for) = rule.and_then(|r| r.suspend) {
            let until = now.as_secs().saturating_add(suspend_for.as_secs());
            suspend::suspend(&*self.store, &meter.rule, &meter.identity, until);
        }
    }

    /// The shared store (for metering responses).
    pub fn store(&self) -> &dyn SharedStore {
        &*self.store
    }

    /// Counts a refused request; enough of them in one period suspends.
    fn strike(&self, rule: &Rule, identity: &str, limit: u32, period: Duration, now: u64) {
        let Some(suspend_for) = rule.suspend else {
            return;
        };
        let strikes = add_in_window(
            &*self.store,
            &strike_key(&rule.name, identity),
            period.as_secs(),
            now,
            1,
        );
        if strikes.is_none_or(|s| s >= u64::from(limit)) {
            suspend::suspend(
                &*self.store,
                &rule.name,
                identity,
                now.saturating_add(suspend_for.as_secs()),
            );
        }
    }

    fn usage(&self, rule: &Rule, identity: &str, now: u64) -> Value {
        let mut u: BTreeMap<Value, Value> = BTreeMap::new();
        u.insert("identity".into(), identity.into());
        if let Some(q) = &rule.requests {
            let mut r: BTreeMap<Value, Value> = BTreeMap::new();
            r.insert("limit".into(), Value::from(q.limit.get()));
            r.insert("period_seconds".into(), Value::from(q.period.as_secs()));
            u.insert("requests".into(), Value::from(r));
        }
        if let Some(b) = &rule.records {
            let spent = read_in_window(
                &*self.store,
                &records_key(&rule.name, identity),
                b.period.as_secs(),
                now,
            );
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
