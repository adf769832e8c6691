use super::*;
use crate::ratelimit::store::MemoryStore;
use crate::ratelimit::table::{Table, MAX_CAS_ATTEMPTS};

const T0: Duration = Duration::from_secs(1_700_000_000);

fn limiter(
    store: &MemoryStore,
    limit: u32,
    period_secs: u64,
    burst: u32,
) -> RequestLimiter<&MemoryStore> {
    RequestLimiter::new(
        NonZeroU32::new(limit).unwrap(),
        Duration::from_secs(period_secs),
        burst,
        store,
        Table::new("test", 1_024, 60, period_secs),
    )
    .unwrap()
}

fn admitted(l: &RequestLimiter<&MemoryStore>, who: &str, n: u32, now: Duration) -> u32 {
    (0..n)
        .filter(|_| l.check(who, now) == Admission::Admitted)
        .count() as u32
}

#[test]
fn burst_then_refill_at_the_rate() {
    let store = MemoryStore::default();
    let l = limiter(&store, 60, 60, 10);
    assert_eq!(admitted(&l, "alice", 50, T0), 10, "burst");
    assert_eq!(
        admitted(&l, "alice", 5, T0 + Duration::from_millis(999)),
        0,
        "not yet one interval"
    );
    assert_eq!(
        admitted(&l, "alice", 5, T0 + Duration::from_secs(1)),
        1,
        "one per second"
    );
    assert_eq!(
        admitted(&l, "alice", 50, T0 + Duration::from_secs(60)),
        10,
        "capped at the burst"
    );
}

#[test]
fn limited_answers_say_when_to_retry() {
    let store = MemoryStore::default();
    let l = limiter(&store, 1, 10, 1);
    assert_eq!(l.check("a", T0), Admission::Admitted);
    assert_eq!(
        l.check("a", T0 + Duration::from_secs(4)),
        Admission::Limited {
            retry_after: Duration::from_secs(6)
        }
    );
}

#[test]
fn identities_are_independent() {
    let store = MemoryStore::default();
    let l = limiter(&store, 60, 60, 2);
    assert_eq!(admitted(&l, "alice", 5, T0), 2);
    assert_eq!(admitted(&l, "bob", 5, T0), 2);
}

#[test]
fn a_clock_stepping_backwards_does_not_refill() {
    let store = MemoryStore::default();
    let l = limiter(&store, 60, 60, 3);
    assert_eq!(admitted(&l, "a", 3, T0), 3);
    assert_eq!(admitted(&l, "a", 3, T0 - Duration::from_secs(30)), 0);
    assert_eq!(admitted(&l, "a", 3, T0), 0);
}

#[test]
fn period_boundaries_are_exact() {
    let store = MemoryStore::default();
    let l = limiter(&store, 10, 10, 1);
    assert_eq!(admitted(&l, "a", 1, T0), 1);
    assert_eq!(
        admitted(&l, "a", 1, T0 + Duration::from_nanos(999_999_999)),
        0
    );
    assert_eq!(admitted(&l, "a", 1, T0 + Duration::from_secs(1)), 1);
}

#[test]
fn state_is_shared_by_limiters_on_one_store_like_vms() {
    // Two VMs (two limiter instances) share one store: together they admit the burst once.
    let store = MemoryStore::default();
    let (vm1, vm2) = (limiter(&store, 60, 60, 10), limiter(&store, 60, 60, 10));
    let total = admitted(&vm1, "alice", 8, T0) + admitted(&vm2, "alice", 8, T0);
    assert_eq!(total, 10);
}

#[test]
fn contention_retries_then_denies_when_attempts_run_out() {
    let store = MemoryStore::default();
    let l = limiter(&store, 60, 60, 10);
    assert_eq!(l.check("a", T0), Admission::Admitted);
    *store.fail_next_writes.borrow_mut() = MAX_CAS_ATTEMPTS - 1;
    assert_eq!(
        l.check("a", T0),
        Admission::Admitted,
        "retried until the write went through"
    );
    *store.fail_next_writes.borrow_mut() = MAX_CAS_ATTEMPTS;
    assert_eq!(
        l.check("a", T0),
        Admission::Contended,
        "never allow when the update is lost"
    );
}
