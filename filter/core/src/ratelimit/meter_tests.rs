use super::*;
use crate::ratelimit::store::MemoryStore;
use std::time::Duration;

const T0: u64 = 1_700_000_100;

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
        match meter.on_body(piece, store, T0) {
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
    let mut m = ResponseMeter::new("bulk", "sub=x", &b);
    let body = page(0, 4);
    assert_eq!(stream(&mut m, &store, &body, 7), body);
    assert_eq!((m.records(), m.truncated()), (4, false));
}

#[test]
fn the_client_never_gets_a_record_past_the_budget() {
    for chunk in [1, 3, 16, 1000] {
        let store = MemoryStore::default();
        let b = budget(5, CountSpec::JsonArray("/items".into()));
        let mut m = ResponseMeter::new("bulk", "sub=x", &b);
        let got = stream(&mut m, &store, &page(0, 8), chunk);
        assert_eq!(got.matches("\"id\"").count(), 5, "chunk {chunk}: {got}");
        assert!(!got.contains("\"5\""), "chunk {chunk}: {got}");
        assert!(m.truncated());
        assert!(ResponseMeter::exhausted(&b, &store, "bulk", "sub=x", T0));
    }
}

#[test]
fn concurrent_responses_share_one_budget() {
    let store = MemoryStore::default();
    let b = budget(6, CountSpec::JsonArray("/items".into()));
    let (mut a, mut c) = (
        ResponseMeter::new("bulk", "sub=x", &b),
        ResponseMeter::new("bulk", "sub=x", &b),
    );
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
            let n = match m.on_body(piece, &store, T0) {
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
    let mut m = ResponseMeter::new("bulk", "sub=x", &b);
    assert_eq!(
        m.on_body(b"{}\n{}\n{}\n", &store, T0),
        BodyAction::Truncate(6)
    );
    assert!(ResponseMeter::exhausted(&b, &store, "bulk", "sub=x", T0));
    assert!(!ResponseMeter::exhausted(
        &b,
        &store,
        "bulk",
        "sub=x",
        T0 + 300
    ));
}

#[test]
fn malformed_bodies_are_cut() {
    let store = MemoryStore::default();
    let b = budget(100, CountSpec::JsonArray("/items".into()));
    let mut m = ResponseMeter::new("bulk", "sub=x", &b);
    assert_eq!(
        m.on_body(b"{\"items\": [1, 2,, 3]}", &store, T0),
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
    let mut m = ResponseMeter::new("bulk", "sub=x", &b);
    assert_eq!(m.on_headers(ok, &store, T0), HeaderAction::Continue);
    let mut m2 = ResponseMeter::new("bulk", "sub=x", &b);
    assert_eq!(m2.on_headers(ok, &store, T0), HeaderAction::Refuse);
    assert!(m2.budget_exhausted());
    let mut m3 = ResponseMeter::new("bulk", "sub=y", &b);
    let no_count = |name: &str| (name == ":status").then(|| "200".to_owned());
    assert_eq!(
        m3.on_headers(no_count, &store, T0),
        HeaderAction::Refuse,
        "no count, no records"
    );
    assert!(!m3.budget_exhausted(), "a missing count does not suspend");
}

#[test]
fn errors_are_not_metered_and_compressed_bodies_are_cut_without_blame() {
    let store = MemoryStore::default();
    let b = budget(1, CountSpec::JsonArray("/items".into()));
    let mut m = ResponseMeter::new("bulk", "sub=x", &b);
    let error = |name: &str| (name == ":status").then(|| "503".to_owned());
    assert_eq!(m.on_headers(error, &store, T0), HeaderAction::Continue);
    assert_eq!(
        m.on_body(b"upstream down [[[", &store, T0),
        BodyAction::Pass
    );
    let mut g = ResponseMeter::new("bulk", "sub=x", &b);
    let gzip = |name: &str| match name {
        ":status" => Some("200".to_owned()),
        "content-encoding" => Some("gzip".to_owned()),
        _ => None,
    };
    assert_eq!(
        g.on_headers(gzip, &store, T0),
        HeaderAction::DropContentLength
    );
    assert_eq!(
        g.on_body(b"\x1f\x8b...", &store, T0),
        BodyAction::Truncate(0)
    );
    assert!(g.truncated() && !g.budget_exhausted());
}
