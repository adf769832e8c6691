//! Suspension: an identity that spends its record budget, or keeps
//! hammering past its request limit, is refused on every route the limit
//! covers until the suspension ends. Kept in the identity's table entry in
//! shared data, so every worker enforces it at once.

use super::store::SharedStore;
use super::table::{Entry, Table, TableError};
use std::time::Duration;

/// Until when (seconds since the epoch) the entry's identity is suspended.
pub fn suspended_until(entry: &Entry, now: u64) -> Option<u64> {
    Some(entry.suspended_until).filter(|until| *until > now)
}

/// Suspends `identity` until `until`; never shortens a longer suspension.
/// Returns whether this call suspended an identity that was not suspended.
pub fn suspend<S: SharedStore + ?Sized>(
    table: &Table,
    store: &S,
    identity: &str,
    until: u64,
    now: Duration,
) -> Result<bool, TableError> {
    let secs = now.as_secs();
    table.update(store, identity, now, |e| {
        let newly = e.suspended_until <= secs && until > secs;
        e.suspended_until = e.suspended_until.max(until);
        newly
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratelimit::store::MemoryStore;

    #[test]
    fn suspension_holds_until_it_ends_and_never_shrinks() {
        let s = MemoryStore::default();
        let t = Table::new("bulk", 64, 300, 60);
        let now = Duration::from_secs(100);
        let until = |who: &str, at: u64| suspended_until(&t.read(&s, who), at);
        assert_eq!(until("sub=a", 100), None);
        assert_eq!(suspend(&t, &s, "sub=a", 1_000, now), Ok(true));
        assert_eq!(until("sub=a", 999), Some(1_000));
        assert_eq!(until("sub=a", 1_000), None, "over at the end");
        assert_eq!(
            suspend(&t, &s, "sub=a", 500, now),
            Ok(false),
            "already suspended"
        );
        assert_eq!(until("sub=a", 999), Some(1_000), "not shortened");
        assert_eq!(until("sub=b", 999), None, "others unaffected");
    }
}
