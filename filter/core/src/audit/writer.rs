//! One VM's audit chain, and its place in shared data.
//!
//! A chain holds a *slot* in shared data (`pal:audit:slot:<n>`) with a
//! lease, renewed on every tick, and keeps its head there: written on every
//! tick and exactly when the chain is released (not per record, to keep
//! shared-data writes off the request path). A new chain takes a free slot — one released by a VM that shut
//! down, or whose lease ran out because its VM died — and its first record,
//! `chain_reset`, links to the head the slot held. So when a VM is reloaded
//! the trail goes on from where the old chain stopped, and a verifier can
//! tell a chain that ended from one whose tail was cut.

use super::chain::{Chain, Head, Sealed};
use crate::ratelimit::store::{create_if_absent, SharedStore};
use serde_json::{json, Map, Value};
use std::rc::Rc;
use std::time::Duration;

/// How long a slot stays a chain's without renewal.
pub const LEASE: Duration = Duration::from_secs(30);

/// Slots tried before a chain goes on without one.
pub const MAX_SLOTS: u32 = 256;

const COUNTER_KEY: &str = "pal:audit:chains";

fn slot_key(n: u32) -> String {
    format!("pal:audit:slot:{n}")
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Slot {
    owner: String,
    lease_until: u64,
    head: Option<Head>,
}

impl Slot {
    fn parse(bytes: &[u8]) -> Option<Slot> {
        let v: Value = serde_json::from_slice(bytes).ok()?;
        Some(Slot {
            owner: v.get("owner")?.as_str()?.to_owned(),
            lease_until: v.get("lease_until")?.as_u64()?,
            head: v.get("head").and_then(Head::from_json),
        })
    }

    fn bytes(&self) -> Vec<u8> {
        json!({
            "owner": self.owner,
            "lease_until": self.lease_until,
            "head": self.head.as_ref().map(Head::to_json),
        })
        .to_string()
        .into_bytes()
    }
}

/// Writes one VM's chain of audit records.
pub struct AuditWriter {
    chain: Option<Chain>,
    store: Rc<dyn SharedStore>,
    slot: Option<u32>,
    /// The last signed head's seq and when it was signed.
    last_signed: Option<(u64, Duration)>,
}

impl std::fmt::Debug for AuditWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditWriter")
            .field("chain", &self.chain.as_ref().map(Chain::id))
            .field("slot", &self.slot)
            .finish_non_exhaustive()
    }
}

impl AuditWriter {
    pub fn new(store: Rc<dyn SharedStore>) -> AuditWriter {
        AuditWriter {
            chain: None,
            store,
            slot: None,
            last_signed: None,
        }
    }

    /// The chain's id, once it has one (after the first record).
    pub fn chain_id(&self) -> Option<&str> {
        self.chain.as_ref().map(Chain::id)
    }

    /// The last record written, if any.
    pub fn head(&self) -> Option<Head> {
        self.chain.as_ref().and_then(Chain::head)
    }

    /// Seals `record` into the chain; returns the records to write, in
    /// order (a `chain_reset` first when the chain starts).
    pub fn write(
        &mut self,
        record: Map<String, Value>,
        now: Duration,
        timestamp: &str,
    ) -> Vec<Sealed> {
        let mut out = Vec::with_capacity(2);
        let started = self.chain.is_none();
        let chain = match self.chain.take() {
            Some(chain) => chain,
            None => {
                let mut chain = Chain::new(&self.new_chain_id(now));
                let (slot, previous) = self.claim(chain.id(), now);
                self.slot = slot;
                let reason = match (&slot, &previous) {
                    (None, _) => "no free slot in shared data: this chain links to nothing",
                    (Some(_), Some(_)) => "a new chain follows the last known head",
                    (Some(_), None) => "a new chain, first in its slot",
                };
                out.push(chain.seal_line(chain.reset_record(previous.as_ref(), timestamp, reason)));
                chain
            }
        };
        let mut chain = chain;
        let mut record = record;
        // OPA's `labels.id` names the instance that decided: here, the chain.
        if let Some(Value::Object(labels)) = record.get_mut("labels") {
            labels.insert("id".into(), chain.id().into());
        }
        out.push(chain.seal_line(record));
        self.chain = Some(chain);
        // A new chain shows its head at once; after that the tick keeps it
        // current (off the per-request path), and a release writes it exact.
        if started {
            self.publish_head(now);
        }
        out
    }

    /// On the tick: seals a signed `chain_head` for the current head, if
    /// records came since the last one and the interval has passed.
    pub fn checkpoint(
        &mut self,
        signing: &super::sign::Signing,
        now: Duration,
        timestamp: &str,
    ) -> Vec<Sealed> {
        let Some(head) = self.head() else {
            return Vec::new();
        };
        let due = match self.last_signed {
            None => true,
            Some((seq, at)) => seq != head.seq && now.saturating_sub(at) >= signing.interval,
        };
        let Some(chain) = self.chain.as_mut().filter(|_| due) else {
            return Vec::new();
        };
        let sealed = chain.seal_line(signing.checkpoint(&head, timestamp));
        // The checkpoint is itself the newest record: signing again needs more.
        self.last_signed = chain.head().map(|h| (h.seq, now));
        self.publish_head(now);
        vec![sealed]
    }

    /// Renews the slot's lease (on the tick).
    pub fn renew(&mut self, now: Duration) {
        self.publish_head(now);
    }

    /// Ends this chain and gives its slot up, so the next chain — in a new
    /// VM, or in this one if Envoy keeps it for the next configuration —
    /// links to its head at once (when the plugin shuts down).
    /// With `signing`, the chain's last records are signed first (a final
    /// `chain_head`, whatever the interval), so no tail is left unvouched.
    /// Returns that record, if any.
    pub fn release(
        &mut self,
        signing: Option<&super::sign::Signing>,
        timestamp: &str,
    ) -> Vec<Sealed> {
        let mut out = Vec::new();
        if let (Some(signing), Some(head)) = (signing, self.head()) {
            let signed = self.last_signed.is_some_and(|(seq, _)| seq == head.seq);
            if let (false, Some(chain)) = (signed, self.chain.as_mut()) {
                out.push(chain.seal_line(signing.checkpoint(&head, timestamp)));
            }
        }
        let head = self.head();
        if let Some(n) = self.slot.take() {
            self.update_slot(n, |slot| {
                slot.head = head.clone();
                slot.lease_until = 0;
            });
        }
        self.chain = None;
        self.last_signed = None;
        out
    }

    /// A chain id no other chain of this Envoy has: the time it started and
    /// a counter in shared data.
    fn new_chain_id(&self, now: Duration) -> String {
        let mut n = 0u64;
        for _ in 0..32 {
            let Some((bytes, cas)) = self.store.get(COUNTER_KEY) else {
                create_if_absent(&*self.store, COUNTER_KEY);
                continue;
            };
            n = crate::ratelimit::store::read_u64(&bytes).unwrap_or(0) + 1;
            if self.store.set(COUNTER_KEY, &n.to_le_bytes(), cas).is_ok() {
                break;
            }
        }
        format!("{:x}-{n}", now.as_millis())
    }

    /// Takes the first free slot; returns it and the head it held.
    fn claim(&self, chain_id: &str, now: Duration) -> (Option<u32>, Option<Head>) {
        let secs = now.as_secs();
        for n in 0..MAX_SLOTS {
            let key = slot_key(n);
            for _ in 0..8 {
                let Some((bytes, cas)) = self.store.get(&key) else {
                    create_if_absent(&*self.store, &key);
                    continue;
                };
                let current = Slot::parse(&bytes);
                if current.as_ref().is_some_and(|s| s.lease_until > secs) {
                    break; // held by a live chain
                }
                let previous = current.and_then(|s| s.head);
                let mine = Slot {
                    owner: chain_id.to_owned(),
                    lease_until: secs + LEASE.as_secs(),
                    head: previous.clone(),
                };
                if self.store.set(&key, &mine.bytes(), cas).is_ok() {
                    return (Some(n), previous);
                }
            }
        }
        (None, None)
    }

    fn publish_head(&mut self, now: Duration) {
        let (Some(n), Some(head), Some(id)) =
            (self.slot, self.head(), self.chain_id().map(str::to_owned))
        else {
            return;
        };
        let lease_until = now.as_secs() + LEASE.as_secs();
        let kept = self.update_slot(n, |slot| {
            if slot.owner == id {
                slot.head = Some(head.clone());
                slot.lease_until = lease_until;
            }
        });
        if kept != Some(true) {
            // Lost the slot (the lease ran out while this VM stalled).
            self.slot = None;
        }
    }

    /// Applies `f` to slot `n` by CAS; returns whether this chain still owns it.
    fn update_slot(&self, n: u32, f: impl Fn(&mut Slot)) -> Option<bool> {
        let key = slot_key(n);
        let id = self.chain_id()?;
        for _ in 0..8 {
            let (bytes, cas) = self.store.get(&key)?;
            let mut slot = Slot::parse(&bytes)?;
            if slot.owner != id {
                return Some(false);
            }
            f(&mut slot);
            if self.store.set(&key, &slot.bytes(), cas).is_ok() {
                return Some(true);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::chain::GENESIS;
    use crate::ratelimit::store::MemoryStore;

    fn rec(i: u64) -> Map<String, Value> {
        json!({"event": "decision", "decision_id": format!("d{i}")})
            .as_object()
            .cloned()
            .unwrap()
    }

    const T: Duration = Duration::from_secs(1_700_000_000);

    #[test]
    fn a_chain_starts_with_a_reset_and_links_on() {
        let store: Rc<dyn SharedStore> = Rc::new(MemoryStore::default());
        let mut w = AuditWriter::new(store);
        let first = w.write(rec(0), T, "t");
        assert_eq!(first.len(), 2);
        assert_eq!(first[0].record["event"], "chain_reset");
        assert_eq!(first[0].record["previous"], Value::Null);
        assert_eq!(first[0].record["prev_hash"], GENESIS);
        assert_eq!(first[1].record["prev_hash"], first[0].record["hash"]);
        let second = w.write(rec(1), T, "t");
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].record["seq"], 2);
    }

    #[test]
    fn a_reloaded_vm_links_to_the_chain_it_replaces() {
        let store: Rc<dyn SharedStore> = Rc::new(MemoryStore::default());
        let mut old = AuditWriter::new(store.clone());
        old.write(rec(0), T, "t");
        old.write(rec(1), T, "t");
        let head = old.head().unwrap();
        // A second VM running meanwhile takes its own slot.
        let mut other = AuditWriter::new(store.clone());
        assert_eq!(
            other.write(rec(0), T, "t")[0].record["previous"],
            Value::Null
        );
        old.release(None, "t");
        let mut new = AuditWriter::new(store.clone());
        let records = new.write(rec(2), T + Duration::from_secs(1), "t");
        assert_eq!(Head::from_json(&records[0].record["previous"]), Some(head));
        assert_ne!(new.chain_id(), old.chain_id());
    }

    #[test]
    fn a_vm_kept_across_a_reload_starts_a_new_chain_linked_to_its_old_one() {
        let store: Rc<dyn SharedStore> = Rc::new(MemoryStore::default());
        let mut w = AuditWriter::new(store);
        w.write(rec(0), T, "t");
        let old = w.head().unwrap();
        w.release(None, "t");
        let records = w.write(rec(1), T, "t");
        assert_eq!(records[0].record["event"], "chain_reset");
        assert_eq!(
            Head::from_json(&records[0].record["previous"]),
            Some(old.clone())
        );
        assert_ne!(w.chain_id(), Some(old.chain_id.as_str()));
    }

    #[test]
    fn heads_are_signed_at_the_interval_and_only_when_records_came() {
        let store: Rc<dyn SharedStore> = Rc::new(MemoryStore::default());
        let mut w = AuditWriter::new(store);
        let signing = crate::audit::sign::Signing::new([3; 32], None, Duration::from_secs(60));
        assert!(
            w.checkpoint(&signing, T, "t").is_empty(),
            "nothing to sign yet"
        );
        w.write(rec(0), T, "t");
        let first = w.checkpoint(&signing, T, "t");
        assert_eq!(first[0].record["event"], "chain_head");
        assert_eq!(first[0].record["signed"]["seq"], 1);
        assert!(
            w.checkpoint(&signing, T + Duration::from_secs(120), "t")
                .is_empty(),
            "no new records"
        );
        w.write(rec(1), T + Duration::from_secs(1), "t");
        assert!(
            w.checkpoint(&signing, T + Duration::from_secs(30), "t")
                .is_empty(),
            "too soon"
        );
        let second = w.checkpoint(&signing, T + Duration::from_secs(61), "t");
        assert_eq!(second[0].record["signed"]["seq"], 3);
    }

    #[test]
    fn a_release_signs_the_tail_first() {
        let store: Rc<dyn SharedStore> = Rc::new(MemoryStore::default());
        let mut w = AuditWriter::new(store);
        let signing = crate::audit::sign::Signing::new([3; 32], None, Duration::from_secs(60));
        w.write(rec(0), T, "t");
        let last = w.release(Some(&signing), "t");
        assert_eq!(last[0].record["event"], "chain_head");
        assert_eq!(last[0].record["signed"]["seq"], 1);
        assert!(
            w.release(Some(&signing), "t").is_empty(),
            "nothing left to sign"
        );
    }

    #[test]
    fn a_dead_vms_slot_is_taken_once_its_lease_runs_out() {
        let store: Rc<dyn SharedStore> = Rc::new(MemoryStore::default());
        let mut dead = AuditWriter::new(store.clone());
        dead.write(rec(0), T, "t");
        let head = dead.head().unwrap();
        std::mem::forget(dead); // no release: the VM crashed
        let mut early = AuditWriter::new(store.clone());
        assert_eq!(
            early.write(rec(0), T + Duration::from_secs(5), "t")[0].record["previous"],
            Value::Null
        );
        let mut late = AuditWriter::new(store.clone());
        let records = late.write(rec(0), T + LEASE + Duration::from_secs(1), "t");
        assert_eq!(Head::from_json(&records[0].record["previous"]), Some(head));
    }

    #[test]
    fn renewing_keeps_the_slot_through_long_quiet_periods() {
        let store: Rc<dyn SharedStore> = Rc::new(MemoryStore::default());
        let mut w = AuditWriter::new(store.clone());
        w.write(rec(0), T, "t");
        for i in 1..20 {
            w.renew(T + Duration::from_secs(5 * i));
        }
        let mut other = AuditWriter::new(store.clone());
        let r = other.write(rec(0), T + Duration::from_secs(100), "t");
        assert_eq!(
            r[0].record["previous"],
            Value::Null,
            "the live chain's slot was not taken"
        );
    }
}
