//! The denial-spike alert: one identity denied `count` times within a
//! period. Counted in a bounded identity table in shared data (the same
//! kind the rate limits use), so all workers count together and exactly one
//! of them sees the count reach the threshold: one alert per identity and
//! period.

use crate::ratelimit::store::SharedStore;
use crate::ratelimit::table::Table;
use std::time::Duration;

/// Identities the spike counter tracks at once.
pub const MAX_IDENTITIES: u32 = 65_536;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DenialSpikes {
    pub count: u64,
    pub period_seconds: u64,
    table: Table,
}

impl DenialSpikes {
    pub fn new(count: u64, period_seconds: u64) -> DenialSpikes {
        DenialSpikes {
            count,
            period_seconds,
            // The entry's strike window counts denials.
            // ':' is not allowed in rule names: these keys are nobody else's.
            table: Table::new("audit:denials", MAX_IDENTITIES, 1, period_seconds),
        }
    }

    /// The same counter, hashing identities with the process salt.
    pub fn salted(mut self, salt: [u8; 16]) -> DenialSpikes {
        self.table = self.table.salted(salt);
        self
    }

    /// Counts one denial of `identity`; true if it made the spike (this
    /// caller should alert). Fails quiet: a lost count only delays an alert.
    pub fn denied<S: SharedStore + ?Sized>(
        &self,
        store: &S,
        identity: &str,
        now: Duration,
    ) -> bool {
        let (window, secs, threshold) = (self.table.strike_window(), now.as_secs(), self.count);
        self.table
            .update(store, identity, now, |e| {
                e.strikes.add(window, secs, 1) == threshold
            })
            .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratelimit::store::MemoryStore;

    #[test]
    fn the_threshold_alerts_once_per_identity_and_period() {
        let s = MemoryStore::default();
        let spikes = DenialSpikes::new(3, 60);
        let t = Duration::from_secs(1_700_000_040);
        let fired: Vec<bool> = (0..6).map(|_| spikes.denied(&s, "sub=m", t)).collect();
        assert_eq!(fired, [false, false, true, false, false, false]);
        assert!(!spikes.denied(&s, "sub=other", t), "per identity");
        let next = t + Duration::from_secs(60);
        let fired: Vec<bool> = (0..3).map(|_| spikes.denied(&s, "sub=m", next)).collect();
        assert_eq!(fired, [false, false, true], "again in the next period");
    }
}
