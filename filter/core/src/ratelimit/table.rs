//! The per-identity state of one rule, in a bounded table in shared data.
//!
//! Envoy's shared data has no call to delete a key, so a key per identity
//! would grow without bound as identities come and go (token rotation, or
//! anonymous callers from many addresses). Instead each rule owns a fixed
//! number of buckets, `pal:t:<rule>:<n>`. An identity hashes (SHA-256) to one
//! bucket, where all its state — the GCRA arrival time, the record window,
//! the strike window and the suspension — is one 64-byte entry. Every change
//! is one compare-and-swap of the bucket, so entries of one bucket never race
//! each other into duplicates.
//!
//! An entry with nothing left to remember is *stale*: writers drop stale
//! entries of other identities, and [`Table::sweep`] (run from the filter's
//! tick) empties them, so memory is `buckets × SLOTS × 64` bytes at most per
//! rule. A new identity whose bucket is full of live entries is refused
//! ([`TableError::Full`]): the caller fails closed rather than forget a
//! live budget.

use super::rule::Rule;
use super::store::{create_if_absent, read_u64, SharedStore};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// Entries per bucket.
pub const SLOTS: usize = 16;

/// Bytes per encoded entry.
const ENTRY_BYTES: usize = 64;

/// How many compare-and-swap attempts an update makes before it gives up.
pub const MAX_CAS_ATTEMPTS: u32 = 32;

/// Default `max_identities` of a rule.
pub const DEFAULT_MAX_IDENTITIES: u32 = 65_536;

/// Why an update could not be made (callers fail closed on both).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableError {
    /// Other workers kept changing the bucket.
    Contended,
    /// The identity is new and its bucket holds only live entries.
    Full,
}

/// A counter for a fixed window of `len` seconds, aligned to the epoch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    pub start: u64,
    pub count: u64,
}

impl Window {
    fn start_at(len: u64, now: u64) -> u64 {
        now - now % len.max(1)
    }

    /// The count of the window containing `now`: an older window is over
    /// (0); a later one — another worker's clock is ahead — is kept.
    pub fn current(&self, len: u64, now: u64) -> u64 {
        if self.start >= Self::start_at(len, now) {
            self.count
        } else {
            0
        }
    }

    /// Adds `n` in the window containing `now`; returns the new count.
    pub fn add(&mut self, len: u64, now: u64, n: u64) -> u64 {
        let start = Self::start_at(len, now);
        if self.start < start {
            *self = Window { start, count: 0 };
        }
        self.count = self.count.saturating_add(n);
        self.count
    }
}

/// Everything one rule remembers about one identity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Entry {
    /// The first 16 bytes of SHA-256 of the identity.
    id: [u8; 16],
    /// GCRA theoretical arrival time, in nanoseconds since the epoch (0: none).
    pub tat_ns: u64,
    /// Records charged in the current record window.
    pub records: Window,
    /// Requests refused for rate in the current request period.
    pub strikes: Window,
    /// Suspended until this second since the epoch (0: never).
    pub suspended_until: u64,
}

impl Entry {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.id);
        for n in [
            self.tat_ns,
            self.records.start,
            self.records.count,
            self.strikes.start,
            self.strikes.count,
            self.suspended_until,
        ] {
            out.extend_from_slice(&n.to_le_bytes());
        }
    }

    fn decode(bytes: &[u8]) -> Option<Entry> {
        let id = bytes.get(..16)?.try_into().ok()?;
        let n = |i: usize| read_u64(bytes.get(16 + 8 * i..24 + 8 * i)?);
        Some(Entry {
            id,
            tat_ns: n(0)?,
            records: Window {
                start: n(1)?,
                count: n(2)?,
            },
            strikes: Window {
                start: n(3)?,
                count: n(4)?,
            },
            suspended_until: n(5)?,
        })
    }
}

/// The bounded identity table of one rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    prefix: String,
    /// Keys the identity hash, so nobody can pick identities that land in
    /// someone else's bucket (see [`super::salt`]).
    salt: [u8; 16],
    buckets: u32,
    /// Window lengths, in seconds, used to tell when an entry is stale.
    record_window: u64,
    strike_window: u64,
}

impl Table {
    /// The table of `rule`, sized for its `max_identities` (unsalted: see
    /// [`Table::salted`]).
    pub fn for_rule(rule: &Rule) -> Table {
        Table::new(
            &rule.name,
            rule.max_identities,
            rule.records.as_ref().map_or(1, |b| b.period.as_secs()),
            rule.requests.as_ref().map_or(1, |q| q.period.as_secs()),
        )
    }

    /// A table for `max_identities` live identities of rule `name`.
    pub fn new(name: &str, max_identities: u32, record_window: u64, strike_window: u64) -> Table {
        let buckets = max_identities.div_ceil(SLOTS as u32).max(1);
        let (record_window, strike_window) = (record_window.max(1), strike_window.max(1));
        // Rules of the same name with other windows or sizes (another
        // plugin in this VM group, or a changed config) get their own keys:
        // entries read with the wrong windows could be reset or dropped.
        let mut shape = Sha256::new();
        shape.update(name.as_bytes());
        for n in [u64::from(buckets), record_window, strike_window] {
            shape.update(n.to_le_bytes());
        }
        let shape: String = shape.finalize()[..4]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Table {
            prefix: format!("pal:t:{name}:{shape}:"),
            salt: [0; 16],
            buckets,
            record_window,
            strike_window,
        }
    }

    /// The same table, hashing identities with `salt`.
    pub fn salted(mut self, salt: [u8; 16]) -> Table {
        self.salt = salt;
        self
    }

    /// How many shared-data keys the table can ever use.
    pub fn buckets(&self) -> u32 {
        self.buckets
    }

    /// The record window length, in seconds.
    pub fn record_window(&self) -> u64 {
        self.record_window
    }

    /// The strike window length, in seconds.
    pub fn strike_window(&self) -> u64 {
        self.strike_window
    }

    fn locate(&self, identity: &str) -> (String, [u8; 16]) {
        let mut h = Sha256::new();
        h.update(self.salt);
        h.update(identity.as_bytes());
        let digest = h.finalize();
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        let mut pick = [0u8; 4];
        pick.copy_from_slice(&digest[16..20]);
        let bucket = u32::from_le_bytes(pick) % self.buckets;
        (format!("{}{bucket}", self.prefix), id)
    }

    /// True if `entry` holds nothing that still matters at `now`.
    fn is_stale(&self, entry: &Entry, now: Duration) -> bool {
        let secs = now.as_secs();
        u128::from(entry.tat_ns) <= now.as_nanos()
            && entry.records.current(self.record_window, secs) == 0
            && entry.strikes.current(self.strike_window, secs) == 0
            && entry.suspended_until <= secs
    }

    fn decode_bucket(bytes: &[u8]) -> Vec<Entry> {
        bytes
            .chunks_exact(ENTRY_BYTES)
            .filter_map(Entry::decode)
            .collect()
    }

    fn encode_bucket(entries: &[Entry]) -> Vec<u8> {
        let mut out = Vec::with_capacity(entries.len() * ENTRY_BYTES);
        for e in entries {
            e.encode(&mut out);
        }
        out
    }

    /// The identity's entry (empty if it has none).
    pub fn read<S: SharedStore + ?Sized>(&self, store: &S, identity: &str) -> Entry {
        let (key, id) = self.locate(identity);
        store
            .get(&key)
            .and_then(|(bytes, _)| Self::decode_bucket(&bytes).into_iter().find(|e| e.id == id))
            .unwrap_or(Entry {
                id,
                ..Entry::default()
            })
    }

    /// True if the identity has an entry, or its bucket has room for one.
    pub fn has_room<S: SharedStore + ?Sized>(
        &self,
        store: &S,
        identity: &str,
        now: Duration,
    ) -> bool {
        let (key, id) = self.locate(identity);
        let Some((bytes, _)) = store.get(&key) else {
            return true;
        };
        let entries = Self::decode_bucket(&bytes);
        entries.len() < SLOTS || entries.iter().any(|e| e.id == id || self.is_stale(e, now))
    }

    /// Applies `f` to the identity's entry and stores the result with one
    /// compare-and-swap of its bucket, retrying on races; `f` may run more
    /// than once. Stale entries of other identities are dropped on the way.
    /// A new identity whose `f` changes nothing takes no slot.
    pub fn update<S: SharedStore + ?Sized, T>(
        &self,
        store: &S,
        identity: &str,
        now: Duration,
        f: impl Fn(&mut Entry) -> T,
    ) -> Result<T, TableError> {
        let (key, id) = self.locate(identity);
        for _ in 0..MAX_CAS_ATTEMPTS {
            let Some((bytes, cas)) = store.get(&key) else {
                create_if_absent(store, &key);
                continue;
            };
            let mut entries = Self::decode_bucket(&bytes);
            let found = entries.iter().position(|e| e.id == id);
            let before = found.and_then(|i| entries.get(i).copied());
            let mut entry = before.unwrap_or(Entry {
                id,
                ..Entry::default()
            });
            let out = f(&mut entry);
            if before.map_or(
                entry
                    == Entry {
                        id,
                        ..Entry::default()
                    },
                |b| b == entry,
            ) {
                return Ok(out); // nothing to store
            }
            entries.retain(|e| e.id == id || !self.is_stale(e, now));
            if let Some(slot) = entries.iter_mut().find(|e| e.id == id) {
                *slot = entry;
            } else if entries.len() < SLOTS {
                entries.push(entry);
            } else {
                return Err(TableError::Full);
            }
            if store.set(&key, &Self::encode_bucket(&entries), cas).is_ok() {
                return Ok(out);
            }
        }
        Err(TableError::Contended)
    }

    /// Drops the stale entries of `count` buckets starting at `first`
    /// (wrapping), one attempt each; returns how many entries were dropped.
    /// A bucket that lost a race is left for the next sweep.
    pub fn sweep<S: SharedStore + ?Sized>(
        &self,
        store: &S,
        now: Duration,
        first: u32,
        count: u32,
    ) -> usize {
        let mut dropped = 0;
        for i in 0..count.min(self.buckets) {
            let bucket = (first % self.buckets + i) % self.buckets;
            let key = format!("{}{bucket}", self.prefix);
            let Some((bytes, cas)) = store.get(&key) else {
                continue;
            };
            let mut entries = Self::decode_bucket(&bytes);
            let had = entries.len();
            entries.retain(|e| !self.is_stale(e, now));
            let torn = bytes.len() != had * ENTRY_BYTES;
            if (entries.len() < had || torn)
                && store.set(&key, &Self::encode_bucket(&entries), cas).is_ok()
            {
                dropped += had - entries.len();
            }
        }
        dropped
    }
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
