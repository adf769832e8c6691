//! Fleet-wide budgets (issue 10) when their dependencies fail, through real
//! Envoy (`palisade_tests::fleet`): Redis killed, Redis hung, the rate
//! limit service killed. The bulk route fails closed (503
//! `rate_limit_unavailable`) without reaching the upstream, other routes
//! keep working, each failure is counted and audited, and the fleet
//! recovers when the dependency comes back, without restarting Envoy. With
//! `on_failure: "local"`, the sidecar's own limits decide instead.
//!
//! Redis here keeps nothing on disk, so a restarted Redis starts every
//! counter at zero (a deployment that must keep budgets across a Redis
//! restart gives it persistence).

use palisade_tests::fleet::{
    assert_unavailable, audited_failure, is_budget_refusal, page, records, rls_failures, rls_stats,
    wait_recovered, Fleet, Global, ATTACKER, BYSTANDER, PAGE, RULE,
};
use serde_json::json;
use std::time::{Duration, Instant};

#[test]
fn redis_killed_mid_test_fails_closed_then_recovers_without_restarting_envoy() {
    const BUDGET: u64 = 1000;
    let mut fleet = Fleet::start(
        3,
        Global {
            budget: BUDGET,
            timeout_ms: 1000,
            on_failure: "deny",
        },
        50,
    );
    // Some pages served, and charged.
    for n in 0..3 {
        assert_eq!(records(&fleet.get(n as usize, ATTACKER, &page(n))), PAGE);
    }
    assert_eq!(fleet.wait_counter("records", ATTACKER, 3 * PAGE), 3 * PAGE);

    fleet.redis.kill();
    let before = fleet.up.hits();
    for i in 0..3 {
        for (who, sub) in [("attacker", ATTACKER), ("bystander", BYSTANDER)] {
            let r = fleet.get(i, sub, &page(4));
            assert_unavailable(&r, &format!("{who} on sidecar {i}, Redis down"));
            // Audited by cause: the service is up and answers UNAVAILABLE
            // for its storage.
            audited_failure(&fleet.envoys[i], &r, &["rls_unavailable"]);
        }
    }
    assert_eq!(
        fleet.up.hits(),
        before,
        "nothing reached the upstream while the budget could not be counted"
    );
    // Only the routes with a global budget fail closed.
    let r = fleet.get(0, ATTACKER, "/api/v1/orders?limit=5");
    assert_eq!(r.status, 200, "a route without a global rule: {r:?}");
    // And counted, by cause.
    for (i, e) in fleet.envoys.iter().enumerate() {
        assert!(
            rls_failures(e, "rls_unavailable") >= 2,
            "sidecar {i} counted its failures; its stats:\n{}",
            rls_stats(e)
        );
    }
    assert!(
        fleet.rls.is_running(),
        "the service survives its Redis: {}",
        fleet.rls.log()
    );

    // Redis back, empty (no persistence: the counters start afresh). Every
    // sidecar serves again, the same Envoy processes.
    fleet.redis.restart();
    let mut total = 0;
    for i in 0..3 {
        total += records(&wait_recovered(&fleet, i, 5 + i as u64));
    }
    assert_eq!(total, 3 * PAGE);
    assert_eq!(
        fleet.wait_counter("records", ATTACKER, total),
        total,
        "charged to the new Redis; logs:\n{}",
        fleet.logs()
    );
    println!("service log:\n{}", fleet.rls.log());
}

/// How a call that ran out of `timeout_ms` is labelled. Envoy sends the
/// timeout along (`grpc-timeout`) and also enforces it, and the two race:
/// Envoy's own timeout ends the call as HTTP 504, which gRPC reads as
/// UNAVAILABLE (14); a tonic service such as `palisade-rls` that expires
/// first answers CANCELLED (1). The filter reads a failed call that took
/// its whole timeout as DEADLINE_EXCEEDED (4) either way, so timeouts are
/// counted apart from outages.
const TIMEOUT_FAILURES: [&str; 1] = ["rls_timeout"];

/// A Redis that hangs (SIGSTOP: connections open, no answer) with a
/// service that would wait 10 s for it: the filter gives up at its own
/// `timeout_ms` (200) and fails closed, rather than holding the request.
#[test]
fn a_hung_redis_costs_the_timeout_not_a_hang() {
    const RLS_WAITS_MS: u64 = 10_000;
    let mut fleet = Fleet::start(
        1,
        Global {
            budget: 1000,
            timeout_ms: 200,
            on_failure: "deny",
        },
        RLS_WAITS_MS,
    );
    assert_eq!(records(&wait_recovered(&fleet, 0, 0)), PAGE);

    fleet.redis.pause();
    let before = fleet.up.hits();
    let envoy = &fleet.envoys[0];
    let mut labels = Vec::new();
    for n in 1..=3 {
        let started = Instant::now();
        let r = fleet.get(0, ATTACKER, &page(n));
        let took = started.elapsed();
        assert_unavailable(&r, "Redis hung");
        // Not a latency check: the service answers only after 10 s, so an
        // answer before that is the filter's own timeout.
        assert!(
            took < Duration::from_millis(RLS_WAITS_MS),
            "answered after {took:?}: the filter waited for the service"
        );
        labels.push(audited_failure(envoy, &r, &TIMEOUT_FAILURES));
    }
    // A body arriving while the check is out is held with the request, not
    // sent upstream undecided.
    let auth = palisade_tests::fleet::bearer(ATTACKER);
    let r = palisade_tests::http::request_with_body(
        fleet.port(0),
        "GET",
        &page(4),
        &[("authorization", auth.as_bytes())],
        vec![b'x'; 4096],
    );
    assert_unavailable(&r, "Redis hung, a request with a body");
    labels.push(audited_failure(envoy, &r, &TIMEOUT_FAILURES));
    assert_eq!(fleet.up.hits(), before, "nothing reached the upstream");
    // Each counted under the label its audit record names.
    for label in TIMEOUT_FAILURES {
        let audited = labels.iter().filter(|l| *l == label).count() as u64;
        assert!(
            rls_failures(envoy, label) >= audited,
            "{audited} {label} audited; stats:\n{}",
            rls_stats(envoy)
        );
    }
    println!("a hung Redis: the filter's timeouts were labelled {labels:?}");

    fleet.redis.resume();
    assert_eq!(records(&wait_recovered(&fleet, 0, 5)), PAGE);
}

/// The service itself gone (its port refuses connections): the same
/// fail-closed answer, and Envoy reconnects once it is back on its port.
#[test]
fn the_service_killed_fails_closed_then_recovers() {
    let mut fleet = Fleet::start(
        1,
        Global {
            budget: 1000,
            timeout_ms: 1000,
            on_failure: "deny",
        },
        50,
    );
    assert_eq!(records(&wait_recovered(&fleet, 0, 0)), PAGE);

    fleet.rls.kill();
    let before = fleet.up.hits();
    for n in 1..=3 {
        let r = fleet.get(0, ATTACKER, &page(n));
        assert_unavailable(&r, "service down");
        audited_failure(&fleet.envoys[0], &r, &["rls_unavailable"]);
    }
    assert_eq!(fleet.up.hits(), before, "nothing reached the upstream");
    assert!(
        rls_failures(&fleet.envoys[0], "rls_unavailable") >= 3,
        "failures counted; stats:\n{}",
        rls_stats(&fleet.envoys[0])
    );

    fleet.rls.restart();
    assert_eq!(records(&wait_recovered(&fleet, 0, 4)), PAGE);
}

/// `on_failure: "local"`: with Redis gone, this sidecar's own limits
/// decide, with their counts up to date (they keep counting in global
/// mode): the page it served before the outage counts against its local
/// budget, which then stops the attacker. Each fallback is counted and on
/// the record.
#[test]
fn on_failure_local_falls_back_to_the_sidecars_own_limits() {
    const BUDGET: u64 = 250;
    let mut fleet = Fleet::start(
        1,
        Global {
            budget: BUDGET,
            timeout_ms: 1000,
            on_failure: "local",
        },
        50,
    );
    assert_eq!(records(&fleet.get(0, ATTACKER, &page(0))), PAGE);
    assert_eq!(fleet.counter("records", ATTACKER), Some(PAGE));

    fleet.redis.kill();
    let before = fleet.up.hits();
    let (mut got, mut served) = (0u64, 0u64);
    let refusal = loop {
        assert!(served < 10, "the local budget never stopped it");
        let r = fleet.get(0, ATTACKER, &page(1 + served));
        if r.status != 200 {
            break r;
        }
        got += records(&r);
        served += 1;
    };
    assert!(is_budget_refusal(&refusal), "{refusal:?}");
    assert_eq!(got, BUDGET - PAGE, "the rest of the local budget");
    assert_eq!(fleet.up.hits() - before, served, "refused: not reached");

    let envoy = &fleet.envoys[0];
    assert!(
        envoy.stat("wasmcustom.palisade.rls_fallbacks.rls_unavailable") >= served,
        "each fallback counted; stats:\n{}",
        rls_stats(envoy)
    );
    let expected = json!({"rule": RULE, "failure": "rls_unavailable", "outcome": "local_limits"});
    let deadline = Instant::now() + Duration::from_secs(10);
    let on_record = loop {
        let n = envoy
            .decisions()
            .iter()
            .filter(|d| {
                d["rate_limit_service_failures"]
                    .as_array()
                    .is_some_and(|f| f.contains(&expected))
            })
            .count() as u64;
        if n >= served || Instant::now() > deadline {
            break n;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        on_record >= served,
        "{on_record} fallbacks on record, {served} served"
    );
}
