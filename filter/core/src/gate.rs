//! The decision for one request: authenticate, build the input, evaluate.
//!
//! This is the whole per-request pipeline, as a pure function of the compiled
//! [`Config`], the request facts, the host's clock and the per-VM token cache.
//! The result is data; the glue maps it to HTTP.

use crate::config::{Config, Mode};
use crate::decision::{self, AllowDirectives, DenyReason, PolicyVerdict, ReplyOverrides, StepUp};
use crate::input;
use crate::policy::Policy;
use crate::ratelimit::limits::{LimitDenial, Limits};
use crate::ratelimit::meter::ResponseMeter;
use crate::request::Request;
use crate::token::cache::{cache_key, TokenCache};
use crate::token::extract::find_token;
use crate::token::remote::RemoteKeys;
use crate::token::verify::{verify_with, VerifiedToken};
use crate::token::TokenError;
use std::rc::Rc;
use std::time::Duration;

/// What was decided, and what to do about it.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub decision: Decision,
    /// The verified token, if the request carried one.
    pub token: Option<Rc<VerifiedToken>>,
    /// False in `dry_run` mode: a denial is recorded but not applied.
    pub enforced: bool,
    /// Record budgets the response must be metered against (allowed requests).
    pub meters: Vec<ResponseMeter>,
    /// The policy input document (for the audit record; cheap to clone).
    pub input: Option<regorus::Value>,
    /// What the policy returned, if it was evaluated and returned a value.
    pub result: Option<regorus::Value>,
    /// Time spent verifying the token and evaluating the policy, when a
    /// clock was given ([`Config::decide_timed`]).
    pub timings: Timings,
    /// The first 16 hex digits of the revision of the policy that decided
    /// ([`crate::policy::Policy::revision`]), when one was held.
    pub policy_revision: Option<String>,
}

/// Time spent in the two costly steps of a decision.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timings {
    /// Token verification (a cache hit counts too), if a token was presented.
    pub verify: Option<Duration>,
    /// Policy evaluation, if the policy ran.
    pub evaluate: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow(AllowDirectives),
    Deny(Denial),
}

/// A refused request: which kind of refusal, a stable reason, and log detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub kind: DenialKind,
    /// Stable reason code, e.g. `token_expired`, `policy_denied`.
    pub reason: &'static str,
    /// Detail for logs only.
    pub detail: String,
    /// Reply fields the policy asked for.
    pub reply: ReplyOverrides,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DenialKind {
    /// A token was presented and failed verification. The policy was not evaluated.
    InvalidToken(TokenError),
    /// No token was presented and the policy said no.
    Unauthenticated,
    /// The policy (or its failure) refused an authenticated or anonymous request.
    Forbidden,
    /// The policy asks for stronger or fresher authentication (RFC 9470).
    StepUp(StepUp),
    /// A rate limit refused it (page size, suspension, rate). The policy was not evaluated.
    Limited(LimitDenial),
    /// No policy is held yet (a remote bundle not fetched, or refused, so
    /// far): Palisade's state, not the caller's fault.
    PolicyUnavailable,
}

impl Evaluation {
    /// Stable reason code: `allowed` or the denial's reason.
    pub fn reason(&self) -> &'static str {
        match &self.decision {
            Decision::Allow(_) => "allowed",
            Decision::Deny(d) => d.reason,
        }
    }

    /// The data category the policy's result names (`data_category`), if
    /// any: the policy marks the request as touching personal data.
    pub fn data_category(&self) -> Option<String> {
        match self.result.as_ref().map(|r| &r["data_category"]) {
            Some(regorus::Value::String(s)) => Some(s.to_string()),
            _ => None,
        }
    }

    /// The `sub` of the verified token, if any.
    pub fn subject(&self) -> Option<&str> {
        self.token.as_deref().and_then(VerifiedToken::subject)
    }
}

impl Config {
    /// Decides on `request` at time `now` (since the Unix epoch), counting it
    /// against `limits` (this VM's limit state for this configuration).
    pub fn decide(
        &self,
        request: &Request,
        now: Duration,
        cache: &mut TokenCache,
        limits: &Limits,
    ) -> Evaluation {
        self.decide_timed(
            self.policy.fixed(),
            request,
            now,
            cache,
            limits,
            &RemoteKeys::default(),
            &|| None,
        )
    }

    /// As [`Config::decide`], evaluating `policy` (the configuration's
    /// own, or the bundle this VM fetched; `None` denies with
    /// `policy_unavailable`), with the keys fetched for remote providers
    /// (`remote`), timing verification and evaluation with `clock` (the
    /// host's monotonic-enough clock; `None` when unavailable).
    #[allow(clippy::too_many_arguments)]
    pub fn decide_timed(
        &self,
        policy: Option<&Policy>,
        request: &Request,
        now: Duration,
        cache: &mut TokenCache,
        limits: &Limits,
        remote: &RemoteKeys,
        clock: &dyn Fn() -> Option<Duration>,
    ) -> Evaluation {
        let since = |start: Option<Duration>| Some(clock()?.saturating_sub(start?));
        // Every record names the policy in force, whatever step decided.
        let policy_revision = policy.and_then(|p| p.revision.get(..16)).map(str::to_owned);
        let enforced = self.mode == Mode::Enforce;
        let mut timings = Timings::default();
        let started = clock();
        let authenticated = self.authenticate(request, now, cache, remote);
        if !matches!(authenticated, Ok(None)) {
            timings.verify = since(started);
        }
        let token = match authenticated {
            Ok(token) => token,
            Err(e) => {
                return Evaluation {
                    decision: Decision::Deny(Denial {
                        kind: DenialKind::InvalidToken(e),
                        reason: e.reason(),
                        detail: e.description().to_owned(),
                        reply: ReplyOverrides::default(),
                    }),
                    token: None,
                    enforced,
                    meters: Vec::new(),
                    input: Some(input::build(request, None, None)),
                    result: None,
                    timings,
                    policy_revision,
                }
            }
        };
        let (usage, meters) = match limits.check(request, token.as_deref(), now) {
            Ok(checked) => checked,
            Err(limited) => {
                return Evaluation {
                    decision: Decision::Deny(Denial {
                        reason: limited.reason(),
                        detail: format!("{limited:?}"),
                        kind: DenialKind::Limited(limited),
                        reply: ReplyOverrides::default(),
                    }),
                    input: Some(input::build(request, token.as_deref(), None)),
                    token,
                    enforced,
                    meters: Vec::new(),
                    result: None,
                    timings,
                    policy_revision,
                }
            }
        };
        let input = input::build_at(request, token.as_deref(), Some(usage), Some(now));
        let Some(policy) = policy else {
            return Evaluation {
                decision: Decision::Deny(Denial {
                    kind: DenialKind::PolicyUnavailable,
                    reason: "policy_unavailable",
                    detail: "no policy bundle is held yet".into(),
                    reply: ReplyOverrides::default(),
                }),
                token,
                enforced,
                meters: Vec::new(),
                input: Some(input),
                result: None,
                timings,
                policy_revision: None,
            };
        };
        let started = clock();
        let evaluated = policy.evaluate_at(input.clone(), now);
        timings.evaluate = since(started);
        let result = evaluated.as_ref().ok().cloned();
        let decision = match decision::interpret(evaluated) {
            PolicyVerdict::Allow(directives) => Decision::Allow(directives),
            PolicyVerdict::Deny(denial) => Decision::Deny(Denial {
                kind: match denial.step_up {
                    Some(step_up) => DenialKind::StepUp(step_up),
                    // A caller that proved who it is over mTLS is not asked
                    // for a bearer token: it is refused. Without providers
                    // Palisade verifies no bearer token (an OPA-Envoy
                    // policy may verify its own): a denial is a 403, as
                    // OPA-Envoy answers.
                    None if token.is_none()
                        && request.source_principal.is_none()
                        && !self.providers.is_empty()
                        && denial.reason == DenyReason::Denied =>
                    {
                        DenialKind::Unauthenticated
                    }
                    None => DenialKind::Forbidden,
                },
                reason: denial.reason.code(),
                detail: denial.detail,
                reply: denial.response,
            }),
        };
        // Dry run meters nothing: it must not cut what it does not enforce.
        let meters = match decision {
            Decision::Allow(_) if enforced => meters,
            _ => Vec::new(),
        };
        Evaluation {
            decision,
            token,
            enforced,
            meters,
            input: Some(input),
            result,
            timings,
            policy_revision,
        }
    }

    /// The verified token, `Ok(None)` when none was presented.
    fn authenticate(
        &self,
        request: &Request,
        now: Duration,
        cache: &mut TokenCache,
        remote: &RemoteKeys,
    ) -> Result<Option<Rc<VerifiedToken>>, TokenError> {
        let Some(found) = find_token(&request.headers, self.token_sources())? else {
            return Ok(None);
        };
        let key = cache_key(found.header, found.token);
        if let Some(hit) = cache.get(&key, now) {
            return Ok(Some(hit));
        }
        let verified = Rc::new(verify_with(
            found.token,
            found.header,
            &self.providers,
            remote,
            now,
        )?);
        cache.insert(key, verified.clone(), now);
        Ok(Some(verified))
    }
}

#[cfg(test)]
#[path = "gate_tests.rs"]
mod tests;
