use super::*;
use crate::audit::chain::Chain;
use serde_json::json;

const PREFIX: &str = "palisade.audit ";

/// A log of `n` records on chain `c1`, between lines of other output.
fn log(n: u64) -> Vec<String> {
    let mut chain = Chain::new("c1");
    let mut lines = vec!["[info] envoy starting".to_owned()];
    for i in 0..n {
        let record = json!({"decision_id": format!("d{i}"), "decision": "allow", "path": "/x"});
        let sealed = chain.seal(record.as_object().cloned().unwrap());
        let text = String::from_utf8(crate::audit::canonical::to_vec(&sealed)).unwrap();
        lines.push(format!("[info][wasm] wasm log p p p: {PREFIX}{text}"));
    }
    lines
}

fn check(lines: &[String], complete_last: bool, heads: &[Head]) -> Report {
    let n = lines.len();
    verify(
        lines.iter().enumerate().map(|(i, l)| Line {
            position: format!("audit.log:{}", i + 1),
            text: l,
            complete: complete_last || i + 1 < n,
        }),
        PREFIX,
        heads,
        &[],
    )
}

fn kinds(r: &Report) -> Vec<(&str, &str)> {
    r.findings
        .iter()
        .map(|f| (f.position.as_str(), f.kind))
        .collect()
}

#[test]
fn an_untouched_log_verifies() {
    let r = check(&log(6), true, &[]);
    assert!(r.ok(), "{:?}", r.findings);
    assert_eq!(r.records, 6);
    assert_eq!(r.chains["c1"], (0, 5));
}

#[test]
fn one_changed_byte_is_found_where_it_is() {
    let mut lines = log(6);
    lines[3] = lines[3].replace("\"d2\"", "\"d9\"");
    assert_eq!(
        kinds(&check(&lines, true, &[])),
        [("audit.log:4", "modified")]
    );
}

#[test]
fn a_deleted_record_is_found_at_the_gap() {
    let mut lines = log(6);
    lines.remove(3); // seq 2
    let r = check(&lines, true, &[]);
    assert_eq!(kinds(&r), [("audit.log:4", "deleted")]);
    assert!(
        r.findings[0].message.contains("seq 2 is missing"),
        "{:?}",
        r.findings
    );
}

#[test]
fn two_swapped_records_are_found() {
    let mut lines = log(6);
    lines.swap(3, 4); // seqs 2 and 3
    let r = check(&lines, true, &[]);
    assert_eq!(r.findings.len(), 1, "{:?}", r.findings);
    assert_eq!(r.findings[0].kind, "reordered");
    assert!(["audit.log:4", "audit.log:5"].contains(&r.findings[0].position.as_str()));
}

#[test]
fn an_inserted_copy_is_found_where_it_was_put() {
    let mut lines = log(6);
    let copy = lines[5].clone(); // seq 4
    lines.insert(3, copy);
    assert_eq!(
        kinds(&check(&lines, true, &[])),
        [("audit.log:4", "inserted")]
    );
}

#[test]
fn an_inserted_forgery_is_found_even_with_a_valid_hash() {
    // A forger who knows the format writes a well-formed record claiming seq 3
    // and linking to seq 2, but cannot make seq 4 link to it.
    let mut lines = log(6);
    let seq2: Value = serde_json::from_str(lines[3].split_once(PREFIX).unwrap().1).unwrap();
    let mut forged = json!({"decision_id": "forged", "decision": "allow", "path": "/x",
        "chain_id": "c1", "seq": 3, "prev_hash": seq2["hash"]});
    forged["hash"] = hash_of(&forged).into();
    let text = String::from_utf8(crate::audit::canonical::to_vec(&forged)).unwrap();
    lines.insert(4, format!("{PREFIX}{text}"));
    assert_eq!(
        kinds(&check(&lines, true, &[])),
        [("audit.log:5", "inserted")]
    );
}

#[test]
fn a_log_cut_inside_a_record_is_a_truncated_tail() {
    let mut lines = log(6);
    let last = lines.pop().unwrap();
    lines.push(last[..last.len() - 40].to_owned());
    assert_eq!(
        kinds(&check(&lines, false, &[])),
        [("audit.log:7", "truncated")]
    );
}

#[test]
fn whole_records_cut_from_the_tail_are_found_against_a_trusted_head() {
    let full = log(6);
    let last: Value = serde_json::from_str(full[6].split_once(PREFIX).unwrap().1).unwrap();
    let head = Head {
        chain_id: "c1".into(),
        seq: 5,
        hash: last["hash"].as_str().unwrap().into(),
    };
    assert!(check(&full, true, std::slice::from_ref(&head)).ok());
    let cut = &full[..5]; // seqs 0..=3
    let r = check(cut, true, &[head]);
    assert_eq!(kinds(&r), [("audit.log:5", "truncated")]);
    assert!(r.findings[0].message.contains("4..=5"), "{:?}", r.findings);
}

#[test]
fn chains_are_checked_independently() {
    let mut a = log(3);
    let b: Vec<String> = log(3)
        .into_iter()
        .skip(1)
        .map(|l| l.replace("c1", "c2"))
        .collect();
    // c2's records were re-labelled, so their hashes no longer match: modified.
    a.extend(b);
    let r = check(&a, true, &[]);
    assert_eq!(
        r.findings.iter().filter(|f| f.kind == "modified").count(),
        3
    );
    assert_eq!(r.chains.len(), 2);
}

#[test]
fn an_edited_duplicate_key_is_found_though_the_value_parses_the_same() {
    let mut lines = log(4);
    // A reader that keeps the first of two keys would see "deny".
    lines[2] = lines[2].replacen("{", "{\"decision\":\"deny\",", 1);
    assert_eq!(
        kinds(&check(&lines, true, &[])),
        [("audit.log:3", "modified")]
    );
}

#[test]
fn floats_survive_the_round_trip() {
    let mut chain = Chain::new("c1");
    let record = json!({"decision_id": "d", "ratio": 677.0 / 7.0, "tiny": 1e-300, "x": 0.1 + 0.2});
    let sealed = chain.seal(record.as_object().cloned().unwrap());
    let text = String::from_utf8(crate::audit::canonical::to_vec(&sealed)).unwrap();
    let lines = vec![format!("{PREFIX}{text}")];
    assert!(
        check(&lines, true, &[]).ok(),
        "{:?}",
        check(&lines, true, &[]).findings
    );
}

#[test]
fn a_huge_or_maximal_seq_neither_hangs_nor_overflows() {
    let mut lines = log(3);
    for seq in [u64::MAX, 1 << 62] {
        let mut forged =
            json!({"decision_id": "f", "chain_id": "c1", "seq": seq, "prev_hash": "00"});
        forged["hash"] = hash_of(&forged).into();
        lines.push(format!(
            "{PREFIX}{}",
            String::from_utf8(crate::audit::canonical::to_vec(&forged)).unwrap()
        ));
    }
    let r = check(&lines, true, &[]);
    assert!(
        r.findings.iter().any(|f| f.kind == "deleted"),
        "{:?}",
        r.findings
    );
}

#[test]
fn the_prefix_counts_only_where_the_filter_writes_it() {
    let mut lines = log(2);
    lines.push(format!(
        "[debug][http] header 'x-evil' value '{PREFIX}{{}}'"
    ));
    assert!(check(&lines, true, &[]).ok());
}

#[test]
fn a_forged_copy_of_the_newest_record_is_the_one_blamed() {
    let mut lines = log(4);
    let newest: Value = serde_json::from_str(lines[4].split_once(PREFIX).unwrap().1).unwrap();
    let mut forged = newest.clone();
    forged["decision"] = "deny".into();
    forged["hash"] = hash_of(&forged).into();
    lines.push(format!(
        "{PREFIX}{}",
        String::from_utf8(crate::audit::canonical::to_vec(&forged)).unwrap()
    ));
    assert_eq!(
        kinds(&check(&lines, true, &[])),
        [("audit.log:6", "inserted")]
    );
}

#[test]
fn a_chain_cut_before_the_head_its_successor_names_is_truncated() {
    let mut old = Chain::new("old");
    let mut lines = Vec::new();
    for i in 0..3 {
        let r = old.seal(
            json!({"decision_id": format!("o{i}")})
                .as_object()
                .cloned()
                .unwrap(),
        );
        lines.push(format!(
            "{PREFIX}{}",
            String::from_utf8(crate::audit::canonical::to_vec(&r)).unwrap()
        ));
    }
    let mut new = Chain::new("new");
    let reset = new.seal(new.reset_record(old.head().as_ref(), "t", "reload"));
    lines.push(format!(
        "{PREFIX}{}",
        String::from_utf8(crate::audit::canonical::to_vec(&reset)).unwrap()
    ));
    assert!(check(&lines, true, &[]).ok());
    lines.remove(2); // the old chain's last record
    assert_eq!(
        kinds(&check(&lines, true, &[])),
        [("audit.log:2", "truncated")]
    );
}

#[test]
fn with_the_public_key_a_rewritten_log_fails_and_an_untouched_one_is_vouched_for() {
    use crate::audit::sign::{key_bytes, Signing};
    let signing = Signing::new([5; 32], None, std::time::Duration::from_secs(60));
    let public = key_bytes(&signing.public_key()).unwrap();
    let canon = |v: &Value| String::from_utf8(crate::audit::canonical::to_vec(v)).unwrap();
    let write = |tamper: bool| {
        let mut chain = Chain::new("c1");
        let mut lines = Vec::new();
        for i in 0..3 {
            let decision = if tamper && i == 1 { "deny" } else { "allow" };
            let r = chain.seal(
                json!({"decision_id": format!("d{i}"), "decision": decision})
                    .as_object()
                    .cloned()
                    .unwrap(),
            );
            lines.push(format!("{PREFIX}{}", canon(&r)));
        }
        // The head was signed over the original records.
        let mut original = Chain::new("c1");
        for i in 0..3 {
            original.seal(
                json!({"decision_id": format!("d{i}"), "decision": "allow"})
                    .as_object()
                    .cloned()
                    .unwrap(),
            );
        }
        let checkpoint = chain.seal(signing.checkpoint(&original.head().unwrap(), "t"));
        lines.push(format!("{PREFIX}{}", canon(&checkpoint)));
        lines
    };
    let run = |lines: &[String]| {
        verify(
            lines.iter().enumerate().map(|(i, l)| Line {
                position: format!("a.log:{}", i + 1),
                text: l,
                complete: true,
            }),
            PREFIX,
            &[],
            &[public],
        )
    };
    let ok = run(&write(false));
    assert!(ok.ok(), "{:?}", ok.findings);
    assert_eq!(ok.signed["c1"], 2);
    // Rewritten with fresh hashes: the chain is consistent, the signature is not.
    let bad = run(&write(true));
    assert_eq!(bad.findings.len(), 2, "{:?}", bad.findings);
    assert!(bad
        .findings
        .iter()
        .any(|f| f.kind == "modified" && f.position == "a.log:4"));
    assert!(bad.findings.iter().any(|f| f.kind == "unsigned"));
    // A log with no signed head at all is not vouched for.
    let unsigned = run(&write(false)[..3]);
    assert_eq!(unsigned.findings[0].kind, "unsigned");
    // Records after the newest signed head are reported: dropping later
    // heads and rewriting what follows must not pass.
    let mut grown = write(false);
    let extra = json!({"decision_id": "late", "chain_id": "c1", "seq": 4, "prev_hash": "x"});
    let mut extra = extra;
    extra["hash"] = hash_of(&extra).into();
    grown.push(format!("{PREFIX}{}", canon(&extra)));
    let tail = run(&grown);
    assert!(
        tail.findings
            .iter()
            .any(|f| f.kind == "unsigned_tail" && f.position == "a.log:5"),
        "{:?}",
        tail.findings
    );
}
