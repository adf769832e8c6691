use super::*;
use crate::ratelimit::store::MemoryStore;
use crate::ratelimit::table::Table;
use std::time::Duration;

const T0: u64 = 1_700_000_100;

fn at(secs: u64) -> Duration {
    Duration::from_secs(secs)
}

fn table() -> Table {
    Table::new("bulk", 1_024, 300, 60)
}

fn meter(rule: &str, identity: &str, b: &RecordBudget) -> ResponseMeter {
    ResponseMeter::new(&table(), rule, identity, b)
}

/// True if `identity`'s budget `b` is spent at `now`.
fn exhausted(b: &RecordBudget, store: &MemoryStore, identity: &str, now: u64) -> bool {
    table().read(store, identity).records.current(300, now) >= b.limit
}

fn budget(limit: u64, count: CountSpec) -> RecordBudget {
    RecordBudget {
        limit,
        period: Duration::from_secs(300),
        count,
    }
}

fn page(from: u64, n: u64) -> String {
    let items: Vec<String> = (from..from + n)
        .map(|i| format!("{{\"id\":\"{i}\"}}"))
        .collect();
    format!("{{\"items\":[{}],\"total\":1000}}", items.join(","))
}

/// Streams `body` in `chunk`-byte pieces; returns what the client receives.
fn stream(meter: &mut ResponseMeter, store: &MemoryStore, body: &str, chunk: usize) -> String {
    let mut out = Vec::new();
    for piece in body.as_bytes().chunks(chunk) {
        match meter.on_body(piece, store, at(T0)) {
            BodyAction::Pass => out.extend_from_slice(piece),
            BodyAction::Truncate(n) => out.extend_from_slice(&piece[..n]),
        }
    }
    String::from_utf8(out).unwrap()
}

#[test]
fn under_budget_passes_whole() {
    let store = MemoryStore::default();
    let b = budget(10, CountSpec::JsonArray("/items".into()));
    let mut m = meter("bulk", "sub=x", &b);
    let body = page(0, 4);
    assert_eq!(stream(&mut m, &store, &body, 7), body);
    assert_eq!((m.records(), m.truncated()), (4, false));
}

#[test]
fn the_client_never_gets_a_record_past_the_budget() {
    for chunk in [1, 3, 16, 1000] {
        let store = MemoryStore::default();
        let b = budget(5, CountSpec::JsonArray("/items".into()));
        let mut m = meter("bulk", "sub=x", &b);
        let got = stream(&mut m, &store, &page(0, 8), chunk);
        assert_eq!(got.matches("\"id\"").count(), 5, "chunk {chunk}: {got}");
        assert!(!got.contains("\"5\""), "chunk {chunk}: {got}");
        assert!(m.truncated());
        assert!(exhausted(&b, &store, "sub=x", T0));
    }
}

#[test]
fn concurrent_responses_share_one_budget() {
    let store = MemoryStore::default();
    let b = budget(6, CountSpec::JsonArray("/items".into()));
    let (mut a, mut c) = (meter("bulk", "sub=x", &b), meter("bulk", "sub=x", &b));
    let (pa, pc) = (page(0, 5), page(100, 5));
    let (ca, cc): (Vec<&[u8]>, Vec<&[u8]>) = (
        pa.as_bytes().chunks(9).collect(),
        pc.as_bytes().chunks(9).collect(),
    );
    let (mut out_a, mut out_c) = (Vec::new(), Vec::new());
    // Interleave the two streams chunk by chunk.
    for i in 0..ca.len().max(cc.len()) {
        for (m, pieces, out) in [(&mut a, &ca, &mut out_a), (&mut c, &cc, &mut out_c)] {
            let Some(piece) = pieces.get(i) else { continue };
            let n = match m.on_body(piece, &store, at(T0)) {
                BodyAction::Pass => piece.len(),
                BodyAction::Truncate(n) => n,
            };
            out.extend_from_slice(&piece[..n]);
        }
    }
    let got = String::from_utf8_lossy(&out_a).matches("\"id\"").count()
        + String::from_utf8_lossy(&out_c).matches("\"id\"").count();
    assert_eq!(got, 6);
    assert_eq!(a.records() + c.records(), 6);
}

#[test]
fn the_budget_refills_next_window() {
    let store = MemoryStore::default();
    let b = budget(2, CountSpec::Ndjson);
    let mut m = meter("bulk", "sub=x", &b);
    assert_eq!(
        m.on_body(b"{}\n{}\n{}\n", &store, at(T0)),
        BodyAction::Truncate(6)
    );
    assert!(exhausted(&b, &store, "sub=x", T0));
    assert!(!exhausted(&b, &store, "sub=x", T0 + 300));
}

#[test]
fn malformed_bodies_are_cut() {
    let store = MemoryStore::default();
    let b = budget(100, CountSpec::JsonArray("/items".into()));
    let mut m = meter("bulk", "sub=x", &b);
    assert_eq!(
        m.on_body(b"{\"items\": [1, 2,, 3]}", &store, at(T0)),
        BodyAction::Truncate(0)
    );
    assert!(m.truncated());
}

#[test]
fn header_counts_are_charged_and_refused_over_budget() {
    let store = MemoryStore::default();
    let b = budget(100, CountSpec::Header("x-total-count".into()));
    let ok = |name: &str| match name {
        ":status" => Some("200".to_owned()),
        _ => Some("60".to_owned()),
    };
    let mut m = meter("bulk", "sub=x", &b);
    assert_eq!(m.on_headers(ok, &store, at(T0)), HeaderAction::Continue);
    let mut m2 = meter("bulk", "sub=x", &b);
    assert_eq!(m2.on_headers(ok, &store, at(T0)), HeaderAction::Refuse);
    assert!(m2.budget_exhausted(), "asking past the budget suspends");
    assert_eq!(m2.records(), 0);
    assert_eq!(
        table().read(&store, "sub=x").records.current(300, T0),
        60,
        "a refused response is charged nothing"
    );
    let forty = |name: &str| match name {
        ":status" => Some("200".to_owned()),
        _ => Some(" 40 ".to_owned()),
    };
    let mut m4 = meter("bulk", "sub=x", &b);
    assert_eq!(m4.on_headers(forty, &store, at(T0)), HeaderAction::Continue);
    assert_eq!(m4.records(), 40, "what remains can still be read");
    let mut m3 = meter("bulk", "sub=y", &b);
    let no_count = |name: &str| (name == ":status").then(|| "200".to_owned());
    assert_eq!(
        m3.on_headers(no_count, &store, at(T0)),
        HeaderAction::Refuse,
        "no count, no records"
    );
    assert!(!m3.budget_exhausted(), "a missing count does not suspend");
}

#[test]
fn errors_are_not_metered_and_compressed_bodies_are_cut_without_blame() {
    let store = MemoryStore::default();
    let b = budget(1, CountSpec::JsonArray("/items".into()));
    let mut m = meter("bulk", "sub=x", &b);
    let error = |name: &str| (name == ":status").then(|| "503".to_owned());
    assert_eq!(m.on_headers(error, &store, at(T0)), HeaderAction::Continue);
    assert_eq!(
        m.on_body(b"upstream down [[[", &store, at(T0)),
        BodyAction::Pass
    );
    let mut g = meter("bulk", "sub=x", &b);
    let gzip = |name: &str| match name {
        ":status" => Some("200".to_owned()),
        "content-encoding" => Some("gzip".to_owned()),
        _ => None,
    };
    assert_eq!(
        g.on_headers(gzip, &store, at(T0)),
        HeaderAction::DropContentLength
    );
    assert_eq!(
        g.on_body(b"\x1f\x8b...", &store, at(T0)),
        BodyAction::Truncate(0)
    );
    assert!(g.truncated() && !g.budget_exhausted());
}

#[test]
fn a_single_record_response_costs_one_record() {
    let store = MemoryStore::default();
    let b = budget(2, CountSpec::JsonArray("/items".into()));
    let one = r#"{"id":"42","name":"Ada","email":"ada@example.com"}"#;
    for _ in 0..2 {
        let mut m = meter("bulk", "sub=x", &b);
        assert_eq!(stream(&mut m, &store, one, 5), one);
        assert_eq!((m.records(), m.truncated()), (1, false));
    }
    assert!(exhausted(&b, &store, "sub=x", T0));
    // A third read would be past the budget: not a byte of it passes.
    let mut m = meter("bulk", "sub=x", &b);
    assert_eq!(stream(&mut m, &store, one, 5), "");
    assert!(m.truncated() && m.budget_exhausted());
}

#[test]
fn a_list_spends_its_first_unit_on_its_first_element() {
    let store = MemoryStore::default();
    let b = budget(10, CountSpec::JsonArray("/items".into()));
    let mut m = meter("bulk", "sub=x", &b);
    assert_eq!(stream(&mut m, &store, &page(0, 3), 1), page(0, 3));
    assert_eq!(m.records(), 3, "not 4");
    let mut empty = meter("bulk", "sub=x", &b);
    let body = r#"{"items":[]}"#;
    assert_eq!(stream(&mut empty, &store, body, 4), body);
    assert_eq!(empty.records(), 1, "an empty page still costs one");
    assert_eq!(table().read(&store, "sub=x").records.current(300, T0), 4);
}

#[test]
fn a_fleet_lease_cuts_the_body_before_the_local_budget_does() {
    for (lease, spent) in [
        (Lease::new(3, None), true),       // the fleet's last 3 records
        (Lease::new(900, Some(3)), false), // a page of 3, more left fleet-wide
    ] {
        for chunk in [1, 5, 1000] {
            let store = MemoryStore::default();
            let b = budget(100, CountSpec::JsonArray("/items".into()));
            let mut m = meter("bulk", "sub=x", &b);
            m.cap(lease);
            let got = stream(&mut m, &store, &page(0, 8), chunk);
            assert_eq!(got.matches("\"id\"").count(), 3, "chunk {chunk}: {got}");
            assert_eq!((m.records(), m.truncated()), (3, true));
            assert_eq!(m.lease_spent(), spent, "{lease:?}");
            // Locally only what passed was charged, and the local budget is not spent.
            assert!(!m.budget_exhausted());
            assert_eq!(table().read(&store, "sub=x").records.current(300, T0), 3);
        }
    }
}

#[test]
fn a_page_within_its_lease_passes_whole_and_spends_nothing() {
    let store = MemoryStore::default();
    let b = budget(100, CountSpec::JsonArray("/items".into()));
    let mut m = meter("bulk", "sub=x", &b);
    m.cap(Lease::new(8, None));
    let body = page(0, 8);
    assert_eq!(stream(&mut m, &store, &body, 4), body);
    assert_eq!(
        (m.records(), m.truncated(), m.lease_spent()),
        (8, false, false)
    );
}

#[test]
fn the_smaller_of_two_leases_holds() {
    let b = budget(100, CountSpec::JsonArray("/items".into()));
    let mut m = meter("bulk", "sub=x", &b);
    m.cap(Lease::new(2, None));
    m.cap(Lease::new(50, Some(5)));
    let got = stream(&mut m, &MemoryStore::default(), &page(0, 8), 1000);
    assert_eq!(got.matches("\"id\"").count(), 2);
    assert!(m.lease_spent());
}

#[test]
fn a_reported_count_over_the_lease_is_refused_whole() {
    let store = MemoryStore::default();
    let b = budget(100, CountSpec::Header("x-record-count".into()));
    let mut m = meter("bulk", "sub=x", &b);
    m.cap(Lease::new(10, None));
    let headers = |n: &'static str| {
        move |name: &str| match name {
            ":status" => Some("200".to_owned()),
            "x-record-count" => Some(n.to_owned()),
            _ => None,
        }
    };
    assert_eq!(
        m.on_headers(headers("11"), &store, at(T0)),
        HeaderAction::Refuse
    );
    assert!(m.lease_spent());
    assert_eq!(table().read(&store, "sub=x").records.current(300, T0), 0);
    let mut m = meter("bulk", "sub=x", &b);
    m.cap(Lease::new(10, None));
    assert_eq!(
        m.on_headers(headers("10"), &store, at(T0)),
        HeaderAction::Continue
    );
    assert_eq!((m.records(), m.lease_spent()), (10, false));
}
