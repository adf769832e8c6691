use super::*;
use crate::ratelimit::store::MemoryStore;

const T0: u64 = 1_700_000_100;

fn at(secs: u64) -> Duration {
    Duration::from_secs(secs)
}

fn charge(t: &Table, s: &MemoryStore, who: &str, now: u64, n: u64) -> Result<u64, TableError> {
    let len = t.record_window();
    t.update(s, who, at(now), |e| e.records.add(len, now, n))
}

#[test]
fn window_adds_and_restarts() {
    let mut w = Window::default();
    assert_eq!(w.add(300, 1_000, 2), 2);
    assert_eq!(w.add(300, 1_199, 3), 5);
    assert_eq!(w.current(300, 1_199), 5);
    assert_eq!(w.add(300, 1_200, 1), 1, "a new window");
    assert_eq!(w.current(300, 1_500), 0, "a later window starts empty");
}

#[test]
fn a_late_clock_does_not_reset_a_newer_window() {
    let mut w = Window::default();
    assert_eq!(w.add(300, 1_200, 5), 5);
    assert_eq!(w.add(300, 1_199, 1), 6, "counted in the newer window");
    assert_eq!(w.current(300, 1_199), 6);
}

#[test]
fn entries_round_trip_and_identities_are_separate() {
    let s = MemoryStore::default();
    let t = Table::new("bulk", 64, 300, 60);
    assert_eq!(charge(&t, &s, "sub=a", T0, 3), Ok(3));
    assert_eq!(charge(&t, &s, "sub=b", T0, 5), Ok(5));
    assert_eq!(charge(&t, &s, "sub=a", T0 + 1, 1), Ok(4));
    assert_eq!(t.read(&s, "sub=a").records.current(300, T0), 4);
    assert_eq!(t.read(&s, "sub=b").records.current(300, T0), 5);
    assert_eq!(
        t.read(&s, "sub=c"),
        t.read(&MemoryStore::default(), "sub=c")
    );
}

#[test]
fn a_read_only_update_takes_no_slot() {
    let s = MemoryStore::default();
    let t = Table::new("bulk", 16, 300, 60);
    for i in 0..100 {
        let who = format!("sub={i}");
        assert_eq!(t.update(&s, &who, at(T0), |e| e.suspended_until), Ok(0));
    }
    assert!(s.keys().iter().all(|k| s.get(k).unwrap().0.is_empty()));
}

#[test]
fn keys_are_bounded_however_many_identities_come() {
    let s = MemoryStore::default();
    let t = Table::new("bulk", 64, 300, 60);
    for i in 0..5_000u64 {
        // Each identity is live for one record window, then the next replaces it.
        let now = T0 + i * 300;
        assert_eq!(charge(&t, &s, &format!("sub={i}"), now, 1), Ok(1), "{i}");
    }
    let keys = s.keys();
    let tables: Vec<_> = keys.iter().filter(|k| k.starts_with("pal:t:")).collect();
    assert!(tables.len() <= t.buckets() as usize, "{tables:?}");
    assert_eq!(t.buckets(), 4);
    for k in tables {
        let (bytes, _) = s.get(k).unwrap();
        assert!(bytes.len() <= SLOTS * ENTRY_BYTES);
    }
}

#[test]
fn a_full_bucket_refuses_new_identities_but_keeps_its_members() {
    let s = MemoryStore::default();
    let t = Table::new("bulk", 16, 300, 60); // one bucket of 16
    for i in 0..16 {
        assert_eq!(charge(&t, &s, &format!("sub={i}"), T0, 1), Ok(1));
    }
    assert_eq!(charge(&t, &s, "sub=new", T0, 1), Err(TableError::Full));
    assert!(!t.has_room(&s, "sub=new", at(T0)));
    assert!(
        t.has_room(&s, "sub=3", at(T0)),
        "members keep their entries"
    );
    assert_eq!(charge(&t, &s, "sub=3", T0, 1), Ok(2));
    // Once the window is over, the old entries are stale and make room.
    let later = T0 + 300;
    assert!(t.has_room(&s, "sub=new", at(later)));
    assert_eq!(charge(&t, &s, "sub=new", later, 1), Ok(1));
}

#[test]
fn live_state_is_never_dropped() {
    let s = MemoryStore::default();
    let t = Table::new("bulk", 16, 300, 60);
    // Suspended long after its records window ended.
    t.update(&s, "sub=bad", at(T0), |e| e.suspended_until = T0 + 900)
        .unwrap();
    // GCRA state one minute ahead.
    t.update(&s, "sub=busy", at(T0), |e| {
        e.tat_ns = (T0 + 60) * 1_000_000_000
    })
    .unwrap();
    assert_eq!(t.sweep(&s, at(T0 + 59), 0, 1), 0);
    assert_eq!(t.read(&s, "sub=bad").suspended_until, T0 + 900);
    assert_eq!(t.sweep(&s, at(T0 + 60), 0, 1), 1, "busy is idle again");
    assert_eq!(t.sweep(&s, at(T0 + 900), 0, 1), 1, "suspension over");
    let key = s
        .keys()
        .into_iter()
        .find(|k| k.starts_with("pal:t:"))
        .unwrap();
    assert_eq!(s.get(&key).unwrap().0, b"", "value memory freed");
}

#[test]
fn sweep_frees_stale_entries_bucket_by_bucket() {
    let s = MemoryStore::default();
    let t = Table::new("bulk", 256, 300, 60);
    for i in 0..100 {
        charge(&t, &s, &format!("sub={i}"), T0, 1).unwrap();
    }
    assert_eq!(t.sweep(&s, at(T0 + 1), 0, t.buckets()), 0, "all live");
    let later = T0 + 600;
    let first_half = t.sweep(&s, at(later), 0, 8);
    let second_half = t.sweep(&s, at(later), 8, 8);
    assert_eq!(first_half + second_half, 100);
    let used: usize = s.keys().iter().map(|k| s.get(k).unwrap().0.len()).sum();
    assert_eq!(used, 0);
}

#[test]
fn updates_retry_then_give_up_under_contention() {
    let s = MemoryStore::default();
    let t = Table::new("bulk", 16, 300, 60);
    assert_eq!(charge(&t, &s, "sub=a", T0, 1), Ok(1), "the bucket exists");
    *s.fail_next_writes.borrow_mut() = MAX_CAS_ATTEMPTS - 1;
    assert_eq!(
        charge(&t, &s, "sub=a", T0, 1),
        Ok(2),
        "retried until it went through"
    );
    *s.fail_next_writes.borrow_mut() = MAX_CAS_ATTEMPTS;
    assert_eq!(charge(&t, &s, "sub=a", T0, 1), Err(TableError::Contended));
    assert_eq!(
        t.read(&s, "sub=a").records.current(300, T0),
        2,
        "nothing half-written"
    );
}

#[test]
fn a_salt_moves_identities_between_buckets_unpredictably() {
    let t = Table::new("bulk", 1 << 20, 300, 60);
    let bucket = |t: &Table, who: &str| t.locate(who).0;
    let moved = (0..64)
        .filter(|i| {
            let who = format!("sub={i}");
            bucket(&t, &who) != bucket(&t.clone().salted([7; 16]), &who)
        })
        .count();
    assert!(moved > 60, "{moved}");
}

#[test]
fn rules_of_one_name_but_other_windows_do_not_share_entries() {
    let s = MemoryStore::default();
    let hourly = Table::new("bulk", 64, 3_600, 60);
    let daily = Table::new("bulk", 64, 86_400, 60);
    assert_eq!(charge(&hourly, &s, "sub=a", T0, 5), Ok(5));
    assert_eq!(daily.read(&s, "sub=a").records.current(86_400, T0), 0);
}

#[test]
fn a_torn_bucket_is_read_as_its_whole_entries() {
    let s = MemoryStore::default();
    let t = Table::new("bulk", 16, 300, 60);
    charge(&t, &s, "sub=a", T0, 2).unwrap();
    let key = s
        .keys()
        .into_iter()
        .find(|k| k.starts_with("pal:t:"))
        .unwrap();
    let (mut bytes, cas) = s.get(&key).unwrap();
    bytes.extend_from_slice(b"junk");
    s.set(&key, &bytes, cas).unwrap();
    assert_eq!(t.read(&s, "sub=a").records.current(300, T0), 2);
    assert_eq!(charge(&t, &s, "sub=a", T0, 1), Ok(3));
}
