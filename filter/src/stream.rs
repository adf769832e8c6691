//! The per-request flow: collect facts through the [`Host`], ask the core,
//! apply the answer. No decision logic lives here.

use crate::audit_log::{self, Trail};
use crate::fleet::{self, Outbox, StreamFleet};
use crate::host::{Flow, Host, LogLevel};
use crate::metrics;
use crate::reply;
use palisade_core::audit::config::AuditConfig;
use palisade_core::audit::record::{Facts, FleetFailure};
use palisade_core::config::{Config, PolicySource};
use palisade_core::gate::Decision;
use palisade_core::policy::remote_bundle::{LiveBundle, Polled, MAX_FETCH_BYTES};
use palisade_core::policy::Policy;
use palisade_core::ratelimit::global::{self, GlobalVerdict};
use palisade_core::ratelimit::limits::Limits;
use palisade_core::ratelimit::meter::{BodyAction, HeaderAction, ResponseMeter};
use palisade_core::ratelimit::store::SharedStore;
use palisade_core::request::{Headers, Request};
use palisade_core::token::cache::TokenCache;
use palisade_core::token::remote::RemoteKeys;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

/// One loaded configuration with its per-VM state. Shared (by `Rc`) by the
/// root context and every stream created while it is current.
pub struct Loaded {
    pub config: Config,
    pub cache: RefCell<TokenCache>,
    /// This VM's limiters, over the host's shared data.
    pub limits: Limits,
    /// Streams decided so far, for decision ids when Envoy gives no request id.
    pub decisions: Cell<u64>,
    /// The denial-spike counter, salted, when that alert is configured.
    pub spikes: Option<palisade_core::audit::spike::DenialSpikes>,
    /// The host's shared data.
    pub store: Rc<dyn SharedStore>,
    /// Keys fetched for providers with `remote_jwks`.
    pub remote_keys: RefCell<RemoteKeys>,
    /// JWKS fetches out: (call token, provider index).
    jwks_calls: RefCell<Vec<(u32, usize)>>,
    /// The bundle this VM fetched, with `policy.bundle.remote`.
    pub bundle: RefCell<LiveBundle>,
    /// The bundle poll out, by call token.
    bundle_call: Cell<Option<u32>>,
}

impl Loaded {
    /// `store` is the host's shared data (shared by every worker's VM).
    pub fn new(config: Config, store: Rc<dyn SharedStore>) -> Self {
        let cache = RefCell::new(TokenCache::new(config.token_cache_capacity));
        let limits = Limits::new(&config.rate_limits, store.clone());
        let spikes = config.audit.denial_spike.clone().map(|d| {
            use palisade_core::ratelimit::salt::{process_salt, random_salt};
            d.salted(process_salt(&*store, random_salt))
        });
        let remote_keys = RefCell::new(RemoteKeys::new(&config.providers));
        Loaded {
            config,
            cache,
            limits,
            decisions: Cell::new(0),
            spikes,
            store,
            remote_keys,
            jwks_calls: RefCell::new(Vec::new()),
            bundle: RefCell::new(LiveBundle::default()),
            bundle_call: Cell::new(None),
        }
    }

    /// The policy that decides now: the configuration's own, or the last
    /// good bundle this VM fetched (`None` before the first one).
    pub fn policy(&self) -> Option<Rc<Policy>> {
        match &self.config.policy {
            PolicySource::Fixed(_) => None,
            PolicySource::Remote(_) => self.bundle.try_borrow().ok()?.policy(),
        }
    }

    /// Keeps the bundle `previous` held, when this configuration polls the
    /// same source the same way: a reload must not leave the VM without a
    /// policy (every request refused) until its first poll lands.
    pub fn adopt_bundle(&self, previous: &Loaded) {
        let (PolicySource::Remote(now), PolicySource::Remote(before)) =
            (&self.config.policy, &previous.config.policy)
        else {
            return;
        };
        if now.fingerprint != before.fingerprint {
            return;
        }
        if let (Ok(mut mine), Ok(theirs)) =
            (self.bundle.try_borrow_mut(), previous.bundle.try_borrow())
        {
            *mine = theirs.carried_over();
        }
    }

    /// Polls the bundle server when a poll is due (on configure and every tick).
    pub fn poll_bundle(&self, host: &impl Host) {
        let PolicySource::Remote(source) = &self.config.policy else {
            return;
        };
        let (Some(now), Ok(mut live)) = (host.now(), self.bundle.try_borrow_mut()) else {
            return;
        };
        let Some(headers) = live.due(source, now) else {
            return;
        };
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        match host.dispatch(&source.cluster, &headers, b"", source.timeout) {
            Some(token) => self.bundle_call.set(Some(token)),
            None => {
                live.failed(source, now);
                host.count("palisade.bundle_failures", 1);
                host.log(
                    LogLevel::Error,
                    &format!(
                        "palisade: cannot poll the policy bundle through cluster `{}` (no such cluster?)",
                        source.cluster
                    ),
                );
            }
        }
    }

    /// Takes the answer to a bundle poll; false if `token` is not one.
    pub fn bundle_answered(&self, host: &impl Host, token: u32, body_size: usize) -> bool {
        if self.bundle_call.get() != Some(token) {
            return false;
        }
        self.bundle_call.set(None);
        let (PolicySource::Remote(source), Some(now), Ok(mut live)) = (
            &self.config.policy,
            host.now(),
            self.bundle.try_borrow_mut(),
        ) else {
            return true;
        };
        let outcome = if body_size > MAX_FETCH_BYTES {
            live.failed(source, now);
            Err(format!(
                "its answer is {body_size} bytes, over {MAX_FETCH_BYTES}; refused unread"
            ))
        } else {
            let status = host.call_status();
            let etag = host
                .call_header("etag")
                .and_then(|v| String::from_utf8(v).ok());
            let body = match status {
                Some(200) => host.call_body(body_size).unwrap_or_default(),
                _ => Vec::new(),
            };
            live.answered(source, status, etag, &body, now)
        };
        match outcome {
            Ok(Polled::Unchanged) => host.count("palisade.bundle_polls_unchanged", 1),
            Ok(Polled::Installed {
                revision,
                describe,
                verified,
            }) => {
                host.count("palisade.bundle_loads", 1);
                host.log(
                    LogLevel::Info,
                    &format!(
                        "palisade: bundle revision `{revision}` ({}) from cluster `{}` is in force: {describe}",
                        if verified { "signature verified" } else { "unsigned" },
                        source.cluster
                    ),
                );
            }
            Err(why) => {
                host.count("palisade.bundle_failures", 1);
                let held = match live.revision() {
                    Some(revision) => format!("bundle revision `{revision}` stays in force"),
                    None => "no bundle is held: requests are refused (503 policy_unavailable)"
                        .to_owned(),
                };
                // One line, so log tooling keeps the whole reason together.
                let why: Vec<&str> = why
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .collect();
                host.log(
                    LogLevel::Error,
                    &format!(
                        "palisade: policy bundle from cluster `{}` refused: {}; {held}",
                        source.cluster,
                        why.join(" ")
                    ),
                );
            }
        }
        true
    }

    /// Sends the JWKS fetches that are due (on configure and every tick).
    pub fn fetch_keys(&self, host: &impl Host) {
        let (Some(now), Ok(mut keys), Ok(mut calls)) = (
            host.now(),
            self.remote_keys.try_borrow_mut(),
            self.jwks_calls.try_borrow_mut(),
        ) else {
            return;
        };
        for i in keys.due(&self.config.providers, now) {
            let (Some(provider), Some(remote)) = (
                self.config.providers.get(i),
                self.config.providers.get(i).and_then(|p| p.remote.as_ref()),
            ) else {
                continue;
            };
            let headers = [
                (":method", "GET"),
                (":path", remote.path.as_str()),
                (":authority", remote.authority.as_str()),
                ("accept", "application/json"),
            ];
            match host.dispatch(&remote.cluster, &headers, b"", remote.timeout) {
                Some(token) => calls.push((token, i)),
                None => {
                    keys.failed(i, now);
                    host.count("palisade.jwks_fetch_failures", 1);
                    host.log(
                        LogLevel::Error,
                        &format!(
                            "palisade: provider {}: cannot fetch its JWKS through cluster `{}` (no such cluster?)",
                            provider.name, remote.cluster
                        ),
                    );
                }
            }
        }
    }

    /// Takes the answer to a JWKS fetch; false if `token` is not one.
    pub fn keys_answered(&self, host: &impl Host, token: u32, body_size: usize) -> bool {
        let Ok(mut calls) = self.jwks_calls.try_borrow_mut() else {
            return false;
        };
        let Some(at) = calls.iter().position(|(t, _)| *t == token) else {
            return false;
        };
        let (_, i) = calls.swap_remove(at);
        drop(calls);
        let (Some(now), Some(provider), Ok(mut keys)) = (
            host.now(),
            self.config.providers.get(i),
            self.remote_keys.try_borrow_mut(),
        ) else {
            return true;
        };
        let fetched = if body_size > MAX_JWKS_BYTES {
            keys.failed(i, now);
            Err(format!(
                "its answer is {body_size} bytes, over {MAX_JWKS_BYTES}; refused unread"
            ))
        } else {
            let body = host.call_body(body_size).unwrap_or_default();
            keys.fetched(i, provider, host.call_status(), &body, now)
        };
        match fetched {
            Ok(installed) => {
                host.count("palisade.jwks_fetches", 1);
                for skipped in &installed.skipped {
                    host.log(
                        LogLevel::Warn,
                        &format!("palisade: provider {}: JWKS {skipped}", provider.name),
                    );
                }
                if installed.changed {
                    // Verifications made with the old set are not reused.
                    if let Ok(mut cache) = self.cache.try_borrow_mut() {
                        cache.clear();
                    }
                    host.log(
                        LogLevel::Info,
                        &format!(
                            "palisade: provider {}: {} key(s) from its JWKS",
                            provider.name, installed.keys
                        ),
                    );
                }
            }
            Err(e) => {
                host.count("palisade.jwks_fetch_failures", 1);
                host.log(
                    LogLevel::Error,
                    &format!(
                        "palisade: provider {}: JWKS fetch failed, keeping the keys held: {e}",
                        provider.name
                    ),
                );
            }
        }
        true
    }
}

/// A JWKS answer larger than this is refused unread.
pub const MAX_JWKS_BYTES: usize = 1 << 20;

/// How often the root context ticks: it ships audit records and alerts,
/// sweeps stale rate-limit state and renews the audit chain's lease.
pub const TICK_PERIOD: Duration = Duration::from_secs(1);

/// Buckets of each rule's identity table one sweep looks at: a table of the
/// default size (4,096 buckets) is swept whole every 80 s by each worker.
pub const SWEEP_BUCKETS: u32 = 52;

impl Loaded {
    /// One tick: empties stale entries of the identity tables, so shared
    /// memory held for identities gone quiet is given back.
    pub fn on_tick(&self, host: &impl Host) {
        let Some(now) = host.now() else {
            return;
        };
        let dropped = self.limits.sweep(now, SWEEP_BUCKETS);
        if dropped > 0 {
            host.log(
                LogLevel::Debug,
                &format!("palisade: swept {dropped} idle rate-limit entries"),
            );
        }
    }
}

/// On the tick: keeps the audit chain's slot in shared data, and ships
/// what waits for the collector and the alert webhook.
pub fn audit_tick(trail: &Trail, loaded: Option<&Loaded>, host: &impl Host) {
    if let (Some(now), Some(l)) = (host.now(), loaded) {
        if let Some(signing) = &l.config.audit.signing {
            audit_log::checkpoint(host, trail, signing, &l.config.audit, now);
        }
    }
    if let (Ok(mut writer), Some(now)) = (trail.writer.try_borrow_mut(), host.now()) {
        writer.renew(now);
    }
    if let Some(loaded) = loaded {
        audit_log::pump(host, trail, &loaded.config.audit);
    }
}

/// The filter's state for one HTTP stream.
pub struct Stream {
    loaded: Option<Rc<Loaded>>,
    /// This VM's audit trail.
    trail: Rc<Trail>,
    /// `response_headers_to_add` from an allowing decision, applied on the response.
    response_headers: Vec<(String, String)>,
    /// Record budgets the response is counted against.
    meters: Vec<ResponseMeter>,
    decision_id: String,
    /// The audit record of a request that went upstream, written when the
    /// stream completes, with the response's status and records.
    pending: Option<Facts>,
    /// When the request arrived.
    started: Duration,
    /// The response status, as the client got it.
    status: Option<u16>,
    /// Rules whose record budget this response spent (suspension done).
    spent: Vec<String>,
    /// A request held until the start of its body arrives (`request_body`).
    awaiting_body: Option<Request>,
    /// Bytes of the held request's body buffered so far.
    body_seen: usize,
    /// Fleet-wide checks and charges of this request (rules with `global`).
    fleet: Option<StreamFleet>,
    /// The calls the root context makes for streams (this VM's).
    outbox: Rc<Outbox>,
}

impl Stream {
    pub fn new(loaded: Option<Rc<Loaded>>, trail: Rc<Trail>) -> Self {
        Stream {
            loaded,
            trail,
            response_headers: Vec::new(),
            meters: Vec::new(),
            decision_id: String::new(),
            pending: None,
            started: Duration::ZERO,
            status: None,
            spent: Vec::new(),
            awaiting_body: None,
            body_seen: 0,
            fleet: None,
            outbox: Rc::new(Outbox::default()),
        }
    }

    /// Hands calls that outlive the stream to `outbox` (the root context's).
    pub fn with_outbox(mut self, outbox: Rc<Outbox>) -> Self {
        self.outbox = outbox;
        self
    }

    /// Decides on the request and either lets it through (with the policy's
    /// header changes) or answers it locally. With `request_body`
    /// configured and a body to come, the decision waits for it
    /// ([`Stream::on_request_body`]).
    pub fn on_request_headers(&mut self, host: &impl Host, end_of_stream: bool) -> Flow {
        let (Some(headers), Some(now)) = (host.request_headers(), host.now()) else {
            return self.refuse(host, &Request::default(), Duration::ZERO, "host_error");
        };
        self.started = now;
        let mut request = collect_request(host, headers);
        let Some(loaded) = self.loaded.clone() else {
            return self.refuse(host, &request, now, "not_configured");
        };
        // Client-sent identity and trust headers are not facts: gone before
        // the policy or the upstream can see them.
        match loaded.config.request_headers.scrub(&mut request) {
            Ok(scrubbed) => {
                for name in &scrubbed.removed {
                    host.remove_request_header(name);
                }
                for (name, value) in &scrubbed.set {
                    host.add_request_header(name, value);
                }
            }
            Err(malformed) => {
                return self.reject(host, &request, now, malformed.reason, &malformed.message);
            }
        }
        if audit_log::collector_down(&self.trail, &loaded.config.audit)
            && personal(&loaded, &request)
        {
            // Personal data is not served while its access cannot be shipped.
            return self.refuse(host, &request, now, "audit_unavailable");
        }
        if loaded.config.request_body_max.is_some() && !end_of_stream {
            self.awaiting_body = Some(request);
            return Flow::Stop;
        }
        self.decide(host, &loaded, request, now)
    }

    /// The request's body so far is `body_size` bytes. Once the configured
    /// amount (or all of it) is there, reads that much — never more — and
    /// decides; until then Envoy buffers it.
    pub fn on_request_body(
        &mut self,
        host: &impl Host,
        body_size: usize,
        end_of_stream: bool,
    ) -> Flow {
        if self.fleet_checking() {
            // Held for the fleet: Envoy buffers the body meanwhile.
            return Flow::Wait;
        }
        let (Some(loaded), Some(max)) = (
            self.loaded.clone(),
            self.loaded.as_ref().and_then(|l| l.config.request_body_max),
        ) else {
            return Flow::Continue;
        };
        if self.awaiting_body.is_none() {
            return Flow::Continue;
        }
        self.body_seen = body_size;
        if body_size < max && !end_of_stream {
            return Flow::Stop;
        }
        let truncated = body_size > max || (body_size == max && !end_of_stream);
        self.decide_on_body(host, &loaded, max, truncated)
    }

    /// Trailers end the request: one still waiting for its body is decided
    /// now, on the body buffered so far. Never let through undecided.
    pub fn on_request_trailers(&mut self, host: &impl Host) -> Flow {
        if self.fleet_checking() {
            return Flow::Wait;
        }
        let (Some(loaded), Some(max)) = (
            self.loaded.clone(),
            self.loaded.as_ref().and_then(|l| l.config.request_body_max),
        ) else {
            return Flow::Continue;
        };
        let truncated = self.body_seen > max;
        self.decide_on_body(host, &loaded, max, truncated)
    }

    /// Decides on the held request with the start of its buffered body:
    /// at most `max` bytes are read.
    fn decide_on_body(
        &mut self,
        host: &impl Host,
        loaded: &Rc<Loaded>,
        max: usize,
        truncated: bool,
    ) -> Flow {
        let Some(mut request) = self.awaiting_body.take() else {
            return Flow::Continue;
        };
        let Some(now) = host.now() else {
            return self.refuse(host, &request, self.started, "host_error");
        };
        let read = self.body_seen.min(max);
        let bytes = if read == 0 {
            Vec::new()
        } else {
            match host.request_body(read) {
                Some(bytes) => bytes,
                None => return self.refuse(host, &request, now, "host_error"),
            }
        };
        request.body = Some(palisade_core::request::Body { truncated, bytes });
        self.decide(host, loaded, request, now)
    }

    /// Decides on a request whose facts are complete, and applies the answer.
    fn decide(
        &mut self,
        host: &impl Host,
        loaded: &Rc<Loaded>,
        request: Request,
        now: Duration,
    ) -> Flow {
        let evaluation = {
            let Ok(mut cache) = loaded.cache.try_borrow_mut() else {
                return self.refuse(host, &request, now, "internal_error");
            };
            let Ok(remote) = loaded.remote_keys.try_borrow() else {
                return self.refuse(host, &request, now, "internal_error");
            };
            let live = loaded.policy();
            loaded.config.decide_timed(
                live.as_deref().or(loaded.config.policy.fixed()),
                &request,
                now,
                &mut cache,
                &loaded.limits,
                &remote,
                &|| host.now(),
            )
        };
        let id = decision_id(&request, now, Some(loaded));
        self.decision_id = id.clone();
        self.raise_alerts(host, loaded, now);
        // A policy can mark personal data too (`data_category` in its result):
        // not served either while its access cannot be shipped.
        if evaluation.data_category().is_some()
            && audit_log::collector_down(&self.trail, &loaded.config.audit)
        {
            return self.refuse(host, &request, now, "audit_unavailable");
        }
        metrics::decided(host, &evaluation);
        let mut facts = audit_log::facts(&id, now, &request, &evaluation, &loaded.config);
        if let (Decision::Deny(_), Some(spikes)) = (&evaluation.decision, &loaded.spikes) {
            let who = match evaluation.subject() {
                Some(sub) => format!("sub={sub}"),
                None => palisade_core::ratelimit::rule::peer_identity(&request),
            };
            if spikes.denied(&*loaded.store, &who, now) {
                audit_log::denial_spike_alert(
                    host,
                    &self.trail,
                    &who,
                    spikes,
                    &id,
                    &loaded.config.audit,
                    now,
                );
            }
        }

        match &evaluation.decision {
            Decision::Deny(denial) if evaluation.enforced => {
                let reply = reply::for_denial(denial, &id);
                facts.http_status = Some(reply.status);
                facts.latency_us = elapsed_us(host, now);
                // Denials are recorded at once: the upstream never sees them.
                self.record(host, facts, now);
                host.send_local_reply(&reply);
                Flow::Stop
            }
            Decision::Deny(_) => {
                // Dry run: recorded as the denial it would have been, after the response.
                set_identity(host, loaded, &evaluation);
                mark_upstream_request(host, &id);
                self.pending = Some(facts);
                self.check_fleet(host, loaded, &request, &evaluation, false)
            }
            Decision::Allow(directives) => {
                for name in &directives.request_headers_to_remove {
                    host.remove_request_header(name);
                }
                // Policy headers replace what the client sent under the same
                // name, as OPA-Envoy does: an upstream must never see a
                // client's `x-subject: admin` beside the policy's value.
                let mut replaced: Vec<&str> = Vec::new();
                for (name, value) in &directives.request_headers_to_add {
                    if !replaced.contains(&name.as_str()) {
                        host.remove_request_header(name);
                        replaced.push(name);
                    }
                    host.add_request_header(name, value);
                }
                set_identity(host, loaded, &evaluation);
                mark_upstream_request(host, &id);
                self.response_headers = directives.response_headers_to_add.clone();
                self.meters = evaluation.meters.clone();
                if !self.meters.is_empty() {
                    // Metered responses must come whole and uncompressed, or
                    // their records could not be counted.
                    for name in ["accept-encoding", "range", "if-range"] {
                        host.remove_request_header(name);
                    }
                }
                self.pending = Some(facts);
                self.check_fleet(host, loaded, &request, &evaluation, evaluation.enforced)
            }
        }
    }

    /// Starts the fleet-wide checks of a request going upstream: `Wait`
    /// until they answer, unless none applies or all failed to start.
    fn check_fleet(
        &mut self,
        host: &impl Host,
        loaded: &Loaded,
        request: &Request,
        evaluation: &palisade_core::gate::Evaluation,
        enforced: bool,
    ) -> Flow {
        let checks = global::checks(
            &loaded.config.rate_limits,
            request,
            evaluation.token.as_deref(),
        );
        if checks.is_empty() {
            return Flow::Continue;
        }
        let fleet = StreamFleet::start(host, checks, enforced);
        let waiting = fleet.waiting();
        self.fleet = Some(fleet);
        if waiting {
            Flow::Wait
        } else {
            self.fleet_decided(host)
        }
    }

    /// True while the request is held for its fleet-wide checks: nothing of
    /// it may go on (a body or trailers callback answering `Continue` would
    /// send the request upstream undecided).
    fn fleet_checking(&self) -> bool {
        self.fleet.as_ref().is_some_and(StreamFleet::checking)
    }

    /// A gRPC call of this stream answered (`status` 0 = OK, `size` bytes).
    /// The last check's answer decides the held request; the last charge's
    /// lets the held response end go.
    pub fn on_grpc_response(&mut self, host: &impl Host, token: u32, status: u32, size: usize) {
        let now = host.now().unwrap_or(self.started);
        let Some(fleet) = self.fleet.as_mut() else {
            return;
        };
        if fleet.check_answered(host, token, status, size, now) {
            if !fleet.waiting() && self.fleet_decided(host) == Flow::Continue {
                host.resume_request();
            }
            return;
        }
        let answered =
            fleet.charge_answered(host, &self.outbox, &self.decision_id, token, status, size);
        if answered == Some(false) {
            host.resume_response();
        }
    }

    /// Applies the fleet-wide verdicts, all in: a refusal answers the
    /// request (in a dry run it is only recorded); leases cap the meters.
    /// Every failed check is counted, logged and put on the record.
    fn fleet_decided(&mut self, host: &impl Host) -> Flow {
        let Some(fleet) = self.fleet.as_ref() else {
            return Flow::Continue;
        };
        let mut failures = Vec::new();
        for (check, verdict) in fleet.verdicts() {
            let Some(failure) = verdict.failure_reason() else {
                continue;
            };
            fleet::failed(host, "check", check.rule(), failure);
            let outcome = match verdict {
                GlobalVerdict::Deny { .. } => "refused",
                _ => {
                    host.count(&format!("palisade.rls_fallbacks.{failure}"), 1);
                    "local_limits"
                }
            };
            failures.push(FleetFailure {
                rule: check.rule().to_owned(),
                failure,
                outcome,
            });
        }
        fleet.suspend_overspent(host, &self.outbox, &self.decision_id);
        let verdicts: Vec<GlobalVerdict> = fleet
            .verdicts()
            .into_iter()
            .map(|(_, v)| v.clone())
            .collect();
        let enforced = fleet.enforced;
        if let Some(facts) = self.pending.as_mut() {
            facts.fleet_failures = failures;
            facts.fleet_pseudonyms = fleet
                .verdicts()
                .into_iter()
                .map(|(c, _)| (c.rule().to_owned(), c.pseudonym().to_owned()))
                .collect();
        }
        if let Some(refusal) = global::first_refusal(&verdicts) {
            let reason = refusal
                .refusal_reason()
                .unwrap_or(global::UNAVAILABLE_REASON);
            host.count(&format!("palisade.fleet_refusals.{reason}"), 1);
            if enforced {
                return self.refuse_for_fleet(host, refusal, reason);
            }
            if let Some(facts) = self.pending.as_mut().filter(|f| f.decision != "deny") {
                // Dry run: recorded as the refusal it would have been
                // (unless the gate's own would-be denial already is).
                facts.decision = "deny";
                facts.reason = reason.to_owned();
                facts.detail = Some(fleet_detail(refusal));
            }
            return Flow::Continue;
        }
        if enforced {
            for grant in verdicts.iter().filter_map(GlobalVerdict::grant) {
                if let Some(lease) = grant.lease {
                    for meter in self.meters.iter_mut().filter(|m| m.rule == grant.rule) {
                        meter.cap(lease);
                    }
                }
            }
        }
        Flow::Continue
    }

    /// Answers a request a fleet-wide limit refused, and records it: the
    /// upstream never sees it, so nothing is charged for it.
    fn refuse_for_fleet(
        &mut self,
        host: &impl Host,
        refusal: &GlobalVerdict,
        reason: &'static str,
    ) -> Flow {
        let reply = match refusal {
            GlobalVerdict::Limited { denial, .. } => {
                reply::for_fleet_limit(denial, &self.decision_id)
            }
            _ => reply::unavailable(reason, &self.decision_id),
        };
        self.fleet = None;
        self.meters.clear();
        self.response_headers.clear();
        self.status = Some(reply.status);
        if let Some(mut facts) = self.pending.take() {
            facts.decision = "deny";
            facts.reason = reason.to_owned();
            facts.detail = Some(fleet_detail(refusal));
            facts.http_status = Some(reply.status);
            facts.latency_us = elapsed_us(host, self.started);
            let now = host.now().unwrap_or(self.started);
            self.record(host, facts, now);
        }
        host.send_local_reply(&reply);
        Flow::Stop
    }

    /// Adds the response headers an allowing decision asked for, and starts
    /// metering record budgets (or refuses a response whose reported count
    /// is over budget, before any of its body is sent).
    pub fn on_response_headers(&mut self, host: &impl Host) -> Flow {
        for (name, value) in self.response_headers.drain(..) {
            host.add_response_header(&name, &value);
        }
        self.status = host
            .response_header(":status")
            .and_then(|s| String::from_utf8_lossy(&s).parse().ok());
        let (Some(loaded), Some(now)) = (self.loaded.clone(), host.now()) else {
            if self.meters.is_empty() {
                return Flow::Continue;
            }
            // Records that cannot be counted must not pass.
            self.meters.clear();
            self.status = Some(503);
            host.send_local_reply(&reply::unavailable("host_error", &self.decision_id));
            return Flow::Stop;
        };
        let mut drop_length = false;
        let mut refused: Option<usize> = None;
        for (i, meter) in self.meters.iter_mut().enumerate() {
            let header = |name: &str| {
                host.response_header(name)
                    .map(|v| String::from_utf8_lossy(&v).into_owned())
            };
            match meter.on_headers(header, loaded.limits.store(), now) {
                HeaderAction::Continue => {}
                HeaderAction::DropContentLength => drop_length = true,
                HeaderAction::Refuse => {
                    refused = Some(i);
                    break;
                }
            }
        }
        if let Some(i) = refused {
            // None of this response passes: the other budgets get back
            // what they were charged for it.
            for (j, meter) in self.meters.iter_mut().enumerate() {
                if j != i {
                    meter.refund(loaded.limits.store(), now);
                }
            }
            let Some(meter) = self.meters.get(i) else {
                return Flow::Stop;
            };
            if meter.budget_exhausted() {
                loaded.limits.budget_spent(meter, now);
            }
            self.raise_alerts(host, &loaded, now);
            let reply =
                reply::records_refused(&meter.rule, meter.retry_after(now), &self.decision_id);
            if let Some(facts) = self.pending.as_mut() {
                facts.decision = "deny";
                facts.reason = "records_exhausted".into();
                facts.detail = Some(format!(
                    "the upstream reported more records than remain under {}",
                    meter.rule
                ));
                facts.records = Some(0);
                facts.truncated = true;
            }
            self.status = Some(reply.status);
            metrics::records_refused(host);
            host.send_local_reply(&reply);
            // Nothing was delivered, so nothing is charged; a count over a
            // lease that was the rest of the fleet's budget still suspends.
            self.charge_fleet(host);
            self.meters.clear();
            return Flow::Stop;
        }
        if drop_length {
            // The body may be cut at a record boundary: it must be chunked.
            host.remove_response_header("content-length");
        }
        Flow::Continue
    }

    /// Meters one response body chunk, cutting it where a budget ends.
    /// At the end of the body, records charged fleet-wide are charged
    /// before the end is let go (`Wait`).
    pub fn on_response_body(&mut self, host: &impl Host, size: usize, end_of_stream: bool) -> Flow {
        if self.meters.is_empty() {
            return Flow::Continue;
        }
        // Without the clock, the configuration or the chunk, nothing can be
        // counted: nothing more passes.
        let (Some(loaded), Some(now), Some(chunk)) =
            (self.loaded.clone(), host.now(), host.response_body(size))
        else {
            host.replace_response_body(size, &[]);
            for meter in &mut self.meters {
                meter.stop();
            }
            return Flow::Continue;
        };
        let before = (self.meters.len() > 1).then(|| self.meters.clone());
        let mut keep = chunk.len();
        let mut reached = Vec::with_capacity(self.meters.len());
        for meter in &mut self.meters {
            let end = match meter.on_body(&chunk, loaded.limits.store(), now) {
                BodyAction::Truncate(n) => n,
                BodyAction::Pass => chunk.len(),
            };
            reached.push(end);
            keep = keep.min(end);
        }
        // Meters that let more through than the shortest cut charged for
        // records the client never gets: they count only what passed.
        if let Some(before) = before {
            let kept = chunk.get(..keep).unwrap_or_default();
            for ((meter, was), end) in self.meters.iter_mut().zip(&before).zip(&reached) {
                if *end > keep {
                    meter.settle(was, kept, loaded.limits.store(), now);
                }
            }
        }
        // Only spending the budget suspends (once per rule); a cut for
        // unreadable data or contention does not blame the caller.
        for meter in &self.meters {
            if meter.budget_exhausted() && !self.spent.contains(&meter.rule) {
                loaded.limits.budget_spent(meter, now);
                self.spent.push(meter.rule.clone());
            }
        }
        self.raise_alerts(host, &loaded, now);
        if keep < chunk.len() {
            host.replace_response_body(size, chunk.get(..keep).unwrap_or_default());
        }
        if end_of_stream {
            self.note_records();
            let charging = self.charge_fleet(host);
            self.meters.clear();
            if charging {
                // The end waits until the records are counted fleet-wide.
                return Flow::Wait;
            }
        }
        Flow::Continue
    }

    /// Charges the fleet with what the response delivered; true if
    /// charges are out.
    fn charge_fleet(&mut self, host: &impl Host) -> bool {
        let meters = &self.meters;
        let Some(fleet) = self.fleet.as_mut() else {
            return false;
        };
        fleet.charge(
            host,
            &self.outbox,
            &self.decision_id,
            |rule| records_under(meters, rule),
            |rule| meters.iter().any(|m| m.rule == rule && m.lease_spent()),
        )
    }

    /// The stream is done (Envoy's `on_log`): writes the record of a request
    /// that went upstream, with the response's status, records and latency.
    pub fn on_log(&mut self, host: &impl Host) {
        self.note_records();
        if let Some(fleet) = self.fleet.as_mut() {
            // Ended without its last chunk: the root context charges it.
            let meters = &self.meters;
            fleet.hand_over(
                host,
                &self.outbox,
                &self.decision_id,
                |rule| records_under(meters, rule),
                |rule| meters.iter().any(|m| m.rule == rule && m.lease_spent()),
            );
        }
        let Some(mut facts) = self.pending.take() else {
            return;
        };
        if let Some(n) = facts.records {
            metrics::returned(host, n, facts.truncated);
        }
        let now = host.now().unwrap_or(self.started);
        if facts.http_status.is_none() {
            facts.http_status = self.status;
        }
        facts.latency_us =
            u64::try_from(now.saturating_sub(self.started).as_micros()).unwrap_or(u64::MAX);
        self.record(host, facts, now);
    }

    /// Writes the audit record of `facts`, under the loaded configuration's
    /// `audit` section (or the defaults when none loaded).
    fn record(&self, host: &impl Host, facts: Facts, now: Duration) {
        match &self.loaded {
            Some(loaded) => audit_log::write(host, &self.trail, facts, &loaded.config.audit, now),
            None => audit_log::write(host, &self.trail, facts, &AuditConfig::defaults(), now),
        }
    }

    /// Alerts for the suspensions the limits just made.
    fn raise_alerts(&self, host: &impl Host, loaded: &Loaded, now: Duration) {
        for s in loaded.limits.take_suspensions() {
            audit_log::alert(
                host,
                &self.trail,
                &s,
                &self.decision_id,
                &loaded.config.audit,
                now,
            );
        }
    }

    /// Copies what the meters counted into the pending record.
    fn note_records(&mut self) {
        if self.meters.is_empty() {
            return;
        }
        if let Some(facts) = self.pending.as_mut() {
            // Budgets count the same records: the response returned the most
            // any of them let through, not their sum.
            facts.records = self.meters.iter().map(ResponseMeter::records).max();
            facts.truncated = self.meters.iter().any(ResponseMeter::truncated);
        }
    }

    /// Refuses a request that cannot be taken as sent (400), recording why.
    fn reject(
        &mut self,
        host: &impl Host,
        request: &Request,
        now: Duration,
        reason: &'static str,
        message: &str,
    ) -> Flow {
        let id = decision_id(request, now, self.loaded.as_deref());
        let mut facts = audit_log::refusal_facts(&id, now, request, reason, 400);
        facts.detail = Some(message.to_owned());
        metrics::refused(host, reason);
        self.record(host, facts, now);
        host.send_local_reply(&reply::bad_request(reason, message, &id));
        Flow::Stop
    }

    /// Refuses a request Palisade cannot decide on (503), recording why.
    fn refuse(
        &mut self,
        host: &impl Host,
        request: &Request,
        now: Duration,
        reason: &'static str,
    ) -> Flow {
        let id = decision_id(request, now, None);
        let facts = audit_log::refusal_facts(&id, now, request, reason, 503);
        metrics::refused(host, reason);
        self.record(host, facts, now);
        host.send_local_reply(&reply::unavailable(reason, &id));
        Flow::Stop
    }
}

/// What the response delivered under `rule`, as its meter counted it.
fn records_under(meters: &[ResponseMeter], rule: &str) -> u64 {
    meters
        .iter()
        .filter(|m| m.rule == rule)
        .map(ResponseMeter::records)
        .max()
        .unwrap_or(0)
}

/// The record's detail for a fleet-wide refusal.
fn fleet_detail(refusal: &GlobalVerdict) -> String {
    use palisade_core::ratelimit::limits::LimitDenial;
    let secs = |d: &Duration| d.as_secs() + u64::from(d.subsec_nanos() > 0);
    match refusal {
        GlobalVerdict::Limited { denial, .. } => match denial {
            LimitDenial::Suspended { rule, until } => {
                format!("suspended fleet-wide under {rule} until {until} (Unix time)")
            }
            LimitDenial::RateLimited {
                rule, retry_after, ..
            } => format!(
                "over the fleet-wide request rate under {rule}; retry after {} s",
                secs(retry_after)
            ),
            LimitDenial::RecordsExhausted { rule, retry_after } => format!(
                "the fleet-wide record budget under {rule} is spent; retry after {} s",
                secs(retry_after)
            ),
            other => format!("fleet-wide: {other:?}"),
        },
        GlobalVerdict::Deny { rule, failure } => format!(
            "fleet-wide limit under {rule}: the rate limit service failed ({}) and on_failure is deny",
            failure.reason()
        ),
        GlobalVerdict::Allowed(_) | GlobalVerdict::FallBackToLocal { .. } => String::new(),
    }
}

/// Sets the verified identity headers (`request_headers.identity`) on a
/// request going upstream, replacing anything of those names.
fn set_identity(host: &impl Host, loaded: &Loaded, evaluation: &palisade_core::gate::Evaluation) {
    let headers = loaded
        .config
        .request_headers
        .identity_headers(evaluation.token.as_deref());
    for (name, value) in headers {
        host.remove_request_header(&name);
        host.add_request_header(&name, &value);
    }
}

/// True if the request is on a route the config marks as personal data.
fn personal(loaded: &Loaded, request: &Request) -> bool {
    let headers = &request.headers;
    loaded
        .config
        .audit
        .personal_route(&headers.text(":method"), &headers.text(":path"))
        .is_some()
}

/// Microseconds from `since` to the host's now.
fn elapsed_us(host: &impl Host, since: Duration) -> u64 {
    host.now().map_or(0, |now| {
        u64::try_from(now.saturating_sub(since).as_micros()).unwrap_or(u64::MAX)
    })
}

/// Header carrying the decision id to the upstream, so its logs can be joined
/// with Palisade's decision records. A client-sent value is replaced.
pub const DECISION_ID_HEADER: &str = "x-palisade-decision-id";

fn mark_upstream_request(host: &impl Host, decision_id: &str) {
    host.remove_request_header(DECISION_ID_HEADER);
    host.add_request_header(DECISION_ID_HEADER, decision_id);
}

fn text_property(host: &impl Host, path: &[&str]) -> Option<String> {
    host.property(path)
        .filter(|v| !v.is_empty())
        .map(|v| String::from_utf8_lossy(&v).into_owned())
}

/// Everything the core needs, read from the host once.
pub fn collect_request(host: &impl Host, headers: Vec<(Vec<u8>, Vec<u8>)>) -> Request {
    Request {
        headers: Headers::from_pairs(headers),
        id: text_property(host, &["request", "id"]),
        protocol: text_property(host, &["request", "protocol"]),
        source_address: text_property(host, &["source", "address"]),
        destination_address: text_property(host, &["destination", "address"]),
        source_principal: text_property(host, &["connection", "uri_san_peer_certificate"]),
        body: None,
    }
}

/// Envoy's request id when present (it is a UUID by default); otherwise a
/// per-VM id from the clock and a counter.
fn decision_id(request: &Request, now: Duration, loaded: Option<&Loaded>) -> String {
    if let Some(id) = request
        .id
        .as_deref()
        .filter(|id| id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
    {
        return id.to_owned();
    }
    let n = loaded.map_or(0, |l| {
        let n = l.decisions.get().wrapping_add(1);
        l.decisions.set(n);
        n
    });
    format!("pal-{:x}-{n}", now.as_nanos())
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
