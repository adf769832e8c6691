//! Fleet-wide budgets (issue 10), end to end: real Envoy sidecars running
//! the filter, one `palisade-rls` (`rls/`, built with
//! `cargo build --release --manifest-path rls/Cargo.toml --locked`) and one
//! real `redis-server`, all on loopback (`palisade_tests::fleet`).
//!
//! - The incident, replayed across three sidecars: a stolen credential
//!   pages through the customer table round-robin over three Envoy
//!   processes, sequentially and then from four threads at once. The
//!   records it gets stay within the one budget plus the documented bound
//!   (`palisade_core::ratelimit::global::max_delivered`), although each
//!   sidecar alone would allow the whole budget; it ends suspended on all
//!   three, and a bystander is untouched. Refused means not reached: the
//!   upstream's hit counter says so.
//! - Without Envoy: the core's own calls, sent as the filter sends them,
//!   are understood by the bundled service (the contract between the two).
//!
//! When the service or Redis fails: `envoy_global_failures.rs`.

use palisade_core::ratelimit::global::{max_delivered, RlsCall};
use palisade_tests::fleet::{
    is_budget_refusal, page, plugin_config, records, rls_config, Fleet, Global, ATTACKER,
    BYSTANDER, CLUSTER, PAGE, RULE,
};
use palisade_tests::http::Response;
use palisade_tests::rls::{Redis, Rls};
use std::time::{Duration, Instant};

/// The attacker's identity is suspended everywhere, on every covered route,
/// and the bystander is served everywhere.
fn assert_suspended_everywhere_bystander_served(fleet: &Fleet) {
    let before = fleet.up.hits();
    for i in 0..fleet.envoys.len() {
        for path in [page(0), "/api/v1/customers/7".to_owned()] {
            let r = fleet.get(i, ATTACKER, &path);
            assert_eq!(
                (r.status, r.json()["reason"].as_str()),
                (403, Some("suspended")),
                "attacker on sidecar {i}, {path}: {r:?}"
            );
        }
    }
    assert_eq!(fleet.up.hits(), before, "refusals never reach the upstream");
    for i in 0..fleet.envoys.len() {
        let r = fleet.get(i, BYSTANDER, &page(3));
        assert_eq!(records(&r), PAGE, "bystander on sidecar {i}");
    }
    assert_eq!(fleet.up.hits(), before + fleet.envoys.len() as u64);
}

/// The incident, sequentially: one request at a time, round-robin over
/// three sidecars. A response's records are charged before its end is let
/// go (checked here in Redis after each page), so at most one request is in
/// flight (k = 1) and the bound is the budget itself.
#[test]
fn incident_replay_across_three_sidecars_stays_within_one_budget() {
    const BUDGET: u64 = 1250;
    let fleet = Fleet::start(
        3,
        Global {
            budget: BUDGET,
            timeout_ms: 1000,
            on_failure: "deny",
        },
        50,
    );
    let before = fleet.up.hits();
    let (mut total, mut served) = (0u64, 0u64);
    let mut per_sidecar = [0u64; 3];
    let refusal = loop {
        let i = served as usize;
        assert!(
            served < 3 * BUDGET / PAGE,
            "never refused after {served} pages, {total} records; logs:\n{}",
            fleet.logs()
        );
        let r = fleet.get(i, ATTACKER, &page(served));
        if r.status != 200 {
            break (i % 3, r);
        }
        let n = records(&r);
        assert!(n <= PAGE, "{n} records in a page of {PAGE}");
        total += n;
        per_sidecar[i % 3] += n;
        served += 1;
        // Counted already: the filter charges a response's records before
        // it lets the response's end go, so this client's next request
        // cannot be checked before the charge.
        assert_eq!(
            fleet.counter("records", ATTACKER),
            Some(total),
            "the service counts exactly the records delivered, before the response ends; logs:\n{}",
            fleet.logs()
        );
    };
    let (at, refusal) = refusal;
    assert!(
        is_budget_refusal(&refusal),
        "sidecar {at} refused for the budget: {refusal:?}; logs:\n{}",
        fleet.logs()
    );
    println!("sequential replay: {total} records in {served} pages (budget {BUDGET}), per sidecar {per_sidecar:?}; then {} {}", refusal.status, refusal.body);

    let bound = max_delivered(BUDGET, Some(PAGE), 1);
    assert_eq!(bound, BUDGET);
    assert!(total <= bound, "{total} records, bound {bound}");
    assert!(
        total + PAGE > BUDGET,
        "the budget was usable: {total} of {BUDGET}"
    );
    // Each sidecar alone allows the whole budget (its local limit): the
    // refusal is the fleet's, not one process's.
    assert!(
        per_sidecar.iter().all(|n| *n > 0 && *n < BUDGET),
        "spread over all three, none alone at the budget: {per_sidecar:?}"
    );
    assert_eq!(
        fleet.up.hits() - before,
        served,
        "only served requests reached the upstream"
    );

    // The last page was cut at the rest of the budget: the identity is
    // suspended fleet-wide (a suspension counter in Redis), so on every
    // sidecar, on every route the rule covers.
    assert!(
        fleet.wait_counter("suspension", ATTACKER, 1) >= 1,
        "the suspension reached Redis; logs:\n{}",
        fleet.logs()
    );
    assert_suspended_everywhere_bystander_served(&fleet);

    // Redis holds pseudonyms, never the identities.
    let keys = fleet.redis.keys("*");
    assert!(!keys.is_empty());
    assert!(
        keys.iter()
            .all(|k| !k.contains(ATTACKER) && !k.contains(BYSTANDER)),
        "{keys:?}"
    );
    // Envoy reached the service over HTTP/2, as gRPC needs.
    for (i, e) in fleet.envoys.iter().enumerate() {
        assert!(
            e.stat(&format!("cluster.{CLUSTER}.upstream_cx_http2_total")) >= 1,
            "sidecar {i} spoke h2 to the service"
        );
    }
}

/// The incident from four threads at once, each round-robin over the three
/// sidecars from its own start. A thread sends its next request only once
/// it has the previous response whole, which the filter lets end only once
/// its charge is counted: so at most four requests of the identity are in
/// flight at once (checked but not yet charged), and the documented bound
/// is `max_delivered(budget, page, 4)`.
#[test]
fn incident_replay_from_four_threads_stays_within_the_documented_bound() {
    const BUDGET: u64 = 1250;
    const THREADS: u64 = 4;
    let fleet = Fleet::start(
        3,
        Global {
            budget: BUDGET,
            timeout_ms: 1000,
            on_failure: "deny",
        },
        50,
    );
    let before = fleet.up.hits();
    let results: Vec<(u64, u64, Response)> = std::thread::scope(|s| {
        let fleet = &fleet;
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                s.spawn(move || {
                    let (mut got, mut served) = (0u64, 0u64);
                    loop {
                        assert!(served < 3 * BUDGET / PAGE, "never refused");
                        let r = fleet.get((t + served) as usize, ATTACKER, &page(t * 3 + served));
                        if r.status != 200 {
                            return (got, served, r);
                        }
                        got += records(&r);
                        served += 1;
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let total: u64 = results.iter().map(|(got, _, _)| got).sum();
    let served: u64 = results.iter().map(|(_, n, _)| n).sum();
    for (_, _, refusal) in &results {
        assert!(
            is_budget_refusal(refusal),
            "refused for the budget: {refusal:?}; logs:\n{}",
            fleet.logs()
        );
    }
    let bound = max_delivered(BUDGET, Some(PAGE), THREADS);
    println!(
        "concurrent replay: {total} records in {served} pages (budget {BUDGET}, bound {bound})"
    );
    assert!(total <= bound, "{total} records, bound {bound}");
    assert!(
        total + PAGE > BUDGET,
        "the budget was usable: {total} of {BUDGET}"
    );
    assert_eq!(
        fleet.up.hits() - before,
        served,
        "only served requests reached the upstream"
    );
    // Every record delivered is charged (Redis stayed up), overshoot included.
    assert_eq!(
        fleet.wait_counter("records", ATTACKER, total),
        total,
        "the service counts exactly the records delivered; logs:\n{}",
        fleet.logs()
    );
    assert!(
        fleet.wait_counter("suspension", ATTACKER, 1) >= 1,
        "the suspension reached Redis; logs:\n{}",
        fleet.logs()
    );
    assert_suspended_everywhere_bystander_served(&fleet);
}

/// One `ShouldRateLimit` call as the filter makes it (`call.message`, the
/// core's bytes), sent to the service over h2c with curl: the gRPC status
/// (from the trailers, or the headers of a trailers-only answer) and the
/// response message.
fn grpc(rls: &Rls, call: &RlsCall) -> (u32, Vec<u8>) {
    use std::io::Write;
    let mut framed = vec![0u8];
    framed.extend_from_slice(&(call.message.len() as u32).to_be_bytes());
    framed.extend_from_slice(&call.message);
    let mut child = std::process::Command::new("curl")
        .args([
            "-s",
            "--http2-prior-knowledge",
            "-D",
            "/dev/stderr",
            "-o",
            "-",
        ])
        .args(["-H", "content-type: application/grpc", "-H", "te: trailers"])
        .args(["--data-binary", "@-"])
        .arg(format!(
            "http://{}/{}/{}",
            rls.addr(),
            call.service,
            call.method
        ))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("curl (installed by scripts/setup.sh)");
    child.stdin.take().unwrap().write_all(&framed).unwrap();
    let out = child.wait_with_output().unwrap();
    let head = String::from_utf8_lossy(&out.stderr);
    let status = head
        .lines()
        .find_map(|l| l.strip_prefix("grpc-status:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no grpc-status in {head:?}"));
    let body = out.stdout.get(5..).unwrap_or_default().to_vec();
    (status, body)
}

/// The contract between the core's messages and the bundled service,
/// without Envoy: the filter's own calls (check, charge, suspend), sent as
/// it sends them, are understood by `palisade-rls` with the limits this
/// file configures; and a killed Redis is a failure the core reads as
/// `rls_unavailable`, healed by restarting Redis alone.
#[test]
fn the_service_understands_the_filters_calls_and_survives_redis() {
    use palisade_core::ratelimit::global::{ChargeOutcome, Check, SuspendOutcome};
    use palisade_core::ratelimit::rule::Rule;
    const BUDGET: u64 = 250;
    let mut redis = Redis::start();
    let rls = Rls::start(&rls_config(BUDGET), &redis.url(), 50);
    let g = Global {
        budget: BUDGET,
        timeout_ms: 1000,
        on_failure: "deny",
    };
    let raw = serde_json::from_value(plugin_config(g)["rate_limits"][0].clone()).unwrap();
    let rule = Rule::compile(&raw, "rate_limits[0]").unwrap();
    let check = Check::new(&rule, &format!("sub={ATTACKER}")).unwrap();
    let now = Duration::from_secs(1_700_000_000);
    let ask = || {
        let (status, body) = grpc(&rls, &check.request_check());
        check.on_check_response(status, &body, now)
    };

    let verdict = ask();
    let lease = verdict.grant().and_then(|g| g.lease).expect("a lease");
    assert_eq!((lease.records, lease.budget_bound), (PAGE, false));
    let (status, body) = grpc(&rls, &check.charge_records(200).unwrap());
    assert_eq!(
        check.on_charge_response(status, &body),
        ChargeOutcome::Charged { remaining: 50 }
    );
    let lease = ask().grant().and_then(|g| g.lease).expect("a lease");
    assert_eq!((lease.records, lease.budget_bound), (50, true));
    let (status, body) = grpc(&rls, &check.charge_records(80).unwrap());
    assert_eq!(
        check.on_charge_response(status, &body),
        ChargeOutcome::OverBudget { suspend: true }
    );
    assert_eq!(
        redis.counter(&format!("{RULE}-records"), check.pseudonym()),
        Some(280),
        "charged past the budget"
    );
    let (status, body) = grpc(&rls, &check.suspend().unwrap());
    assert!(matches!(
        check.on_suspend_response(status, &body, now),
        SuspendOutcome::Suspended(_)
    ));
    assert_eq!(ask().refusal_reason(), Some("suspended"));

    redis.kill();
    let verdict = ask();
    assert_eq!(verdict.refusal_reason(), Some("rate_limit_unavailable"));
    assert_eq!(verdict.failure_reason(), Some("rls_unavailable"));

    // Back, empty: a fresh budget.
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    let verdict = loop {
        let v = ask();
        if v.failure_reason().is_none() || Instant::now() > deadline {
            break v;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let lease = verdict.grant().and_then(|g| g.lease);
    assert_eq!(
        lease.map(|l| l.records),
        Some(PAGE),
        "{verdict:?}; {}",
        rls.log()
    );
}
