//! Checking audit chains read back from logs: every modified, deleted,
//! reordered or inserted record, and a truncated tail, with its position.
//!
//! The caller feeds the lines of one or more files in order; lines without
//! the audit prefix (other log output) are skipped. A hash chain proves
//! order and integrity *relative to its head*: deleting the newest records
//! leaves a valid shorter chain, so the tail is checked against heads the
//! caller trusts (`--head`), and a record cut off mid-line is reported.

use super::chain::{hash_of, Head, GENESIS};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Where a line came from, e.g. `audit.log:42`.
pub type Position = String;

/// One problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub position: Position,
    /// A stable kind: `modified`, `deleted`, `reordered`, `inserted`,
    /// `broken_link`, `truncated`, `unreadable`.
    pub kind: &'static str,
    pub message: String,
}

/// What a verification saw and found.
#[derive(Debug, Default)]
pub struct Report {
    pub records: usize,
    /// Chain id → (first seq, last seq) seen.
    pub chains: BTreeMap<String, (u64, u64)>,
    /// Chain id → the newest seq a valid signed head vouches for (with a
    /// public key only).
    pub signed: BTreeMap<String, u64>,
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.findings.is_empty()
    }
}

struct Rec {
    position: Position,
    order: usize,
    seq: u64,
    prev: String,
    stored_hash: String,
    /// A `chain_head` whose signature verified.
    checkpoint: bool,
}

/// One input line: its position, its text, and whether it ended with a
/// newline (a last line without one was cut off).
pub struct Line<'a> {
    pub position: Position,
    pub text: &'a str,
    pub complete: bool,
}

/// The record in `line`: after `prefix` at the start of the line, or after
/// Envoy's `wasm log <names>: ` header, never anywhere else in the line (a
/// client-controlled value logged elsewhere could hold the prefix).
fn audit_json<'a>(line: &'a str, prefix: &str) -> Option<&'a str> {
    if let Some(json) = line.strip_prefix(prefix) {
        return Some(json);
    }
    let (head, rest) = line.split_once(": ")?;
    if !head.contains("wasm log") {
        return None;
    }
    rest.strip_prefix(prefix)
}

/// Verifies every chain in `lines`; `prefix` marks audit records in a line.
pub fn verify<'a>(
    lines: impl IntoIterator<Item = Line<'a>>,
    prefix: &str,
    heads: &[Head],
    public_keys: &[[u8; 32]],
) -> Report {
    let mut report = Report::default();
    let mut chains: BTreeMap<String, Vec<Rec>> = BTreeMap::new();
    // Heads that later chains say they follow: each must still be there.
    let mut linked: Vec<Head> = Vec::new();
    // Heads a valid signature vouches for, with where the signature is.
    let mut vouched: Vec<(Head, Position)> = Vec::new();
    for (order, line) in lines.into_iter().enumerate() {
        let Some(json) = audit_json(line.text, prefix) else {
            continue;
        };
        let finding = |kind, message: String| Finding {
            position: line.position.clone(),
            kind,
            message,
        };
        let record: Value = match serde_json::from_str(json) {
            Ok(v) => v,
            Err(_) if !line.complete => {
                report.findings.push(finding(
                    "truncated",
                    "the log ends inside this record (truncated tail)".into(),
                ));
                continue;
            }
            Err(e) => {
                report
                    .findings
                    .push(finding("unreadable", format!("not a JSON record: {e}")));
                continue;
            }
        };
        report.records += 1;
        let text = |k: &str| record.get(k).and_then(Value::as_str).map(str::to_owned);
        let (Some(chain), Some(seq), Some(prev), Some(stored_hash)) = (
            text("chain_id"),
            record.get("seq").and_then(Value::as_u64),
            text("prev_hash"),
            text("hash"),
        ) else {
            report.findings.push(finding(
                "unreadable",
                "record without chain_id, seq, prev_hash and hash".into(),
            ));
            continue;
        };
        if hash_of(&record) != stored_hash {
            report.findings.push(finding(
                "modified",
                format!("chain {chain} seq {seq}: content does not match its hash (modified)"),
            ));
        } else if super::canonical::to_vec(&record) != json.trim_end().as_bytes() {
            // Same value, other bytes: a duplicate key, an escape or spacing
            // was edited in, which another reader may see differently.
            report.findings.push(finding(
                "modified",
                format!(
                    "chain {chain} seq {seq}: not written as the filter writes records (edited)"
                ),
            ));
        }
        let mut checkpoint = false;
        if !public_keys.is_empty()
            && record.get("event").and_then(Value::as_str) == Some("chain_head")
        {
            match super::sign::verify_checkpoint_any(&record, public_keys) {
                Ok(head) => {
                    checkpoint = true;
                    vouched.push((head, line.position.clone()));
                }
                Err(why) => report.findings.push(finding(
                    "bad_signature",
                    format!("chain {chain} seq {seq}: signed head rejected: {why}"),
                )),
            }
        }
        if record.get("event").and_then(Value::as_str) == Some("chain_reset") {
            if let Some(previous) = record.get("previous").and_then(Head::from_json) {
                linked.push(previous);
            }
        }
        chains.entry(chain).or_default().push(Rec {
            position: line.position.clone(),
            order,
            seq,
            prev,
            stored_hash,
            checkpoint,
        });
    }
    for (chain, recs) in &chains {
        let trusted: Vec<Head> = heads
            .iter()
            .filter(|h| &h.chain_id == chain)
            .cloned()
            .collect();
        check_chain(chain, recs, &trusted, &mut report.findings);
        let first = recs.iter().map(|r| r.seq).min().unwrap_or(0);
        let last = recs.iter().map(|r| r.seq).max().unwrap_or(0);
        report.chains.insert(chain.clone(), (first, last));
    }
    for head in heads {
        check_head(head, chains.get(&head.chain_id), &mut report.findings);
    }
    // With a public key, every chain needs a signed head, and each signed
    // head must match the record it names.
    if !public_keys.is_empty() {
        for (head, position) in &vouched {
            let matches = chains.get(&head.chain_id).is_some_and(|recs| {
                recs.iter()
                    .any(|r| r.seq == head.seq && r.stored_hash == head.hash)
            });
            if matches {
                let best = report
                    .signed
                    .entry(head.chain_id.clone())
                    .or_insert(head.seq);
                *best = (*best).max(head.seq);
            } else {
                report.findings.push(Finding {
                    position: position.clone(),
                    kind: "modified",
                    message: format!(
                        "chain {} seq {}: the signed head does not match that record (rewritten or deleted)",
                        head.chain_id, head.seq
                    ),
                });
            }
        }
        for (chain, recs) in &chains {
            let Some(&through) = report.signed.get(chain) else {
                if let Some(first) = recs.first() {
                    report.findings.push(Finding {
                        position: first.position.clone(),
                        kind: "unsigned",
                        message: format!("chain {chain}: no valid signed head vouches for it"),
                    });
                }
                continue;
            };
            // Records after the newest signed head are not vouched for: an
            // attacker could have rewritten them and dropped later heads.
            let tail: Vec<&Rec> = recs
                .iter()
                .filter(|r| r.seq > through && !r.checkpoint)
                .collect();
            if let (Some(first), Some(last)) = (tail.first(), tail.iter().map(|r| r.seq).max()) {
                report.findings.push(Finding {
                    position: first.position.clone(),
                    kind: "unsigned_tail",
                    message: format!(
                        "chain {chain}: seqs {}..={last} come after the newest signed head (seq {through}) and are not vouched for",
                        first.seq
                    ),
                });
            }
        }
    }
    // A chain that a later chain follows must reach the head it names; one
    // absent from these files may be in another, so it is not judged.
    for head in &linked {
        if let Some(recs) = chains.get(&head.chain_id) {
            check_head(head, Some(recs), &mut report.findings);
        }
    }
    report.findings.sort_by_key(|f| {
        chains
            .values()
            .flatten()
            .find(|r| r.position == f.position)
            .map_or(usize::MAX, |r| r.order)
    });
    report
}

fn check_chain(chain: &str, recs: &[Rec], heads: &[Head], findings: &mut Vec<Finding>) {
    let mut by_seq: HashMap<u64, Vec<&Rec>> = HashMap::new();
    for r in recs {
        by_seq.entry(r.seq).or_default().push(r);
    }
    let at = |r: &Rec, kind, message: String| Finding {
        position: r.position.clone(),
        kind,
        message: format!("chain {chain} seq {}: {message}", r.seq),
    };
    let seqs: BTreeSet<u64> = by_seq.keys().copied().collect();
    let in_order = longest_increasing(recs);
    let genuine = genuine_copies(recs, &by_seq, &in_order, heads);
    for (i, r) in recs.iter().enumerate() {
        let copies = by_seq.get(&r.seq).map_or(0, Vec::len);
        if copies > 1 && genuine.get(&r.seq) != Some(&r.order) {
            findings.push(at(
                r,
                "inserted",
                format!("appears {copies} times; this one is not part of the chain (inserted)"),
            ));
            continue;
        }
        if copies == 1 && !in_order[i] {
            let after = recs
                .iter()
                .find(|x| x.seq.checked_add(1) == Some(r.seq))
                .map_or(String::new(), |x| {
                    format!(", after seq {} at {}", x.seq, x.position)
                });
            findings.push(at(
                r,
                "reordered",
                format!("is out of order; it belongs{after} (reordered)"),
            ));
        }
        if r.seq == 0 {
            if r.prev != GENESIS {
                findings.push(at(
                    r,
                    "broken_link",
                    "a first record must link to the genesis hash".into(),
                ));
            }
            continue;
        }
        match by_seq.get(&(r.seq - 1)) {
            None => {
                // Report a gap once, at the first record after it.
                if by_seq[&r.seq].first().map(|x| x.order) == Some(r.order) {
                    let gap_start = seqs.range(..r.seq).next_back().map_or(0, |s| s + 1);
                    let missing = if gap_start + 1 == r.seq {
                        format!("seq {gap_start} is missing before it (deleted)")
                    } else {
                        format!(
                            "seqs {gap_start}..={} are missing before it (deleted)",
                            r.seq - 1
                        )
                    };
                    findings.push(at(r, "deleted", missing));
                }
            }
            Some(before) if !before.iter().any(|b| b.stored_hash == r.prev) => {
                findings.push(at(
                    r,
                    "broken_link",
                    format!(
                        "prev_hash does not match seq {} (inserted or replaced)",
                        r.seq - 1
                    ),
                ));
            }
            Some(_) => {}
        }
    }
}

/// For each seq with several records, the `order` of the genuine one: the
/// copy a trusted head names; else a copy the next record links to,
/// preferring one in log order; else the first in the log.
fn genuine_copies(
    recs: &[Rec],
    by_seq: &HashMap<u64, Vec<&Rec>>,
    in_order: &[bool],
    heads: &[Head],
) -> HashMap<u64, usize> {
    let ordered = |r: &Rec| {
        recs.iter()
            .position(|x| x.order == r.order)
            .is_some_and(|i| in_order[i])
    };
    let mut out = HashMap::new();
    for (seq, copies) in by_seq {
        if copies.len() < 2 {
            continue;
        }
        let trusted = copies.iter().find(|c| {
            heads
                .iter()
                .any(|h| h.seq == *seq && h.hash == c.stored_hash)
        });
        let next = seq.checked_add(1).and_then(|n| by_seq.get(&n));
        let linked: Vec<&&Rec> = copies
            .iter()
            .filter(|c| next.is_some_and(|next| next.iter().any(|n| n.prev == c.stored_hash)))
            .collect();
        let pick = match (trusted, linked.is_empty()) {
            (Some(t), _) => Some(t),
            (None, false) => linked
                .iter()
                .find(|c| ordered(c))
                .or(linked.first())
                .copied(),
            (None, true) => copies.iter().min_by_key(|c| c.order),
        };
        if let Some(c) = pick {
            out.insert(*seq, c.order);
        }
    }
    out
}

/// Marks a longest run of records whose seqs strictly increase in log
/// order; the others are out of place.
fn longest_increasing(recs: &[Rec]) -> Vec<bool> {
    // Patience sorting: tails[k] = index of the smallest last seq of a run of length k+1.
    let mut tails: Vec<usize> = Vec::new();
    let mut parent: Vec<Option<usize>> = vec![None; recs.len()];
    for (i, r) in recs.iter().enumerate() {
        let k = tails.partition_point(|&t| recs[t].seq < r.seq);
        parent[i] = k.checked_sub(1).map(|p| tails[p]);
        if k == tails.len() {
            tails.push(i);
        } else {
            tails[k] = i;
        }
    }
    let mut keep = vec![false; recs.len()];
    let mut cursor = tails.last().copied();
    while let Some(i) = cursor {
        keep[i] = true;
        cursor = parent[i];
    }
    keep
}

fn check_head(head: &Head, recs: Option<&Vec<Rec>>, findings: &mut Vec<Finding>) {
    let last = recs.and_then(|r| r.iter().max_by_key(|x| x.seq));
    let Some(last) = last else {
        findings.push(Finding {
            position: "(end)".into(),
            kind: "truncated",
            message: format!(
                "chain {} is absent, but its head is seq {}",
                head.chain_id, head.seq
            ),
        });
        return;
    };
    if last.seq < head.seq {
        findings.push(Finding {
            position: last.position.clone(),
            kind: "truncated",
            message: format!(
                "chain {} ends at seq {} here, but its head is seq {}: seqs {}..={} are missing (truncated tail)",
                head.chain_id, last.seq, head.seq, last.seq + 1, head.seq
            ),
        });
    } else if let Some(r) = recs.and_then(|r| r.iter().find(|x| x.seq == head.seq)) {
        if r.stored_hash != head.hash {
            findings.push(Finding {
                position: r.position.clone(),
                kind: "modified",
                message: format!(
                    "chain {} seq {}: hash differs from the trusted head",
                    head.chain_id, head.seq
                ),
            });
        }
    }
}

#[cfg(test)]
#[path = "verify_tests.rs"]
mod tests;
