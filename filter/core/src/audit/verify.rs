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
use std::collections::{BTreeMap, HashMap};

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
}

/// One input line: its position, its text, and whether it ended with a
/// newline (a last line without one was cut off).
pub struct Line<'a> {
    pub position: Position,
    pub text: &'a str,
    pub complete: bool,
}

/// Verifies every chain in `lines`; `prefix` marks audit records in a line.
pub fn verify<'a>(
    lines: impl IntoIterator<Item = Line<'a>>,
    prefix: &str,
    heads: &[Head],
) -> Report {
    let mut report = Report::default();
    let mut chains: BTreeMap<String, Vec<Rec>> = BTreeMap::new();
    for (order, line) in lines.into_iter().enumerate() {
        let Some((_, json)) = line.text.split_once(prefix) else {
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
        }
        chains.entry(chain).or_default().push(Rec {
            position: line.position.clone(),
            order,
            seq,
            prev,
            stored_hash,
        });
    }
    for (chain, recs) in &chains {
        check_chain(chain, recs, &mut report.findings);
        let first = recs.iter().map(|r| r.seq).min().unwrap_or(0);
        let last = recs.iter().map(|r| r.seq).max().unwrap_or(0);
        report.chains.insert(chain.clone(), (first, last));
    }
    for head in heads {
        check_head(head, chains.get(&head.chain_id), &mut report.findings);
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

fn check_chain(chain: &str, recs: &[Rec], findings: &mut Vec<Finding>) {
    let mut by_seq: HashMap<u64, Vec<&Rec>> = HashMap::new();
    for r in recs {
        by_seq.entry(r.seq).or_default().push(r);
    }
    let at = |r: &Rec, kind, message: String| Finding {
        position: r.position.clone(),
        kind,
        message: format!("chain {chain} seq {}: {message}", r.seq),
    };
    let in_order = longest_increasing(recs);
    let genuine = genuine_copies(recs, &by_seq, &in_order);
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
                .find(|x| x.seq + 1 == r.seq)
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
                    let gap_start = (0..r.seq)
                        .rev()
                        .find(|s| by_seq.contains_key(s))
                        .map_or(0, |s| s + 1);
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

/// For each seq with several records, the `order` of the genuine one: a
/// copy the next record links to, preferring one in log order; else the
/// one in log order; else the first.
fn genuine_copies(
    recs: &[Rec],
    by_seq: &HashMap<u64, Vec<&Rec>>,
    in_order: &[bool],
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
        let linked: Vec<&&Rec> = copies
            .iter()
            .filter(|c| {
                by_seq
                    .get(&(seq + 1))
                    .is_some_and(|next| next.iter().any(|n| n.prev == c.stored_hash))
            })
            .collect();
        let pool: Vec<&&Rec> = if linked.is_empty() {
            copies.iter().collect()
        } else {
            linked
        };
        let pick = pool.iter().find(|c| ordered(c)).or(pool.first());
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
