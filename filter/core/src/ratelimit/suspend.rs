//! Suspension: an identity that spends its record budget, or keeps
//! hammering past its request limit, is refused on every route the limit
//! covers until the suspension ends. Stored in shared data, so every worker
//! enforces it at once.

use super::store::{read_u64, SharedStore};

fn key(rule: &str, identity: &str) -> String {
    format!("pal:susp:{rule}:{identity}")
}

/// Until when (seconds since the epoch) `identity` is suspended under `rule`.
pub fn suspended_until<S: SharedStore + ?Sized>(
    store: &S,
    rule: &str,
    identity: &str,
    now: u64,
) -> Option<u64> {
    let (bytes, _) = store.get(&key(rule, identity))?;
    read_u64(&bytes).filter(|until| *until > now)
}

/// Suspends `identity` until `until`; never shortens a longer suspension.
/// Returns false if the write kept losing races (the caller denies anyway).
pub fn suspend<S: SharedStore + ?Sized>(store: &S, rule: &str, identity: &str, until: u64) -> bool {
    let k = key(rule, identity);
    for _ in 0..super::gcra::MAX_CAS_ATTEMPTS {
        let current = store.get(&k);
        if let Some((bytes, _)) = &current {
            if read_u64(bytes).is_some_and(|u| u >= until) {
                return true;
            }
        }
        let Some((_, cas)) = current else {
            super::store::create_if_absent(store, &k);
            continue;
        };
        if store.set(&k, &until.to_le_bytes(), cas).is_ok() {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratelimit::store::MemoryStore;

    #[test]
    fn suspension_holds_until_it_ends_and_never_shrinks() {
        let s = MemoryStore::default();
        assert_eq!(suspended_until(&s, "bulk", "sub=a", 100), None);
        assert!(suspend(&s, "bulk", "sub=a", 1_000));
        assert_eq!(suspended_until(&s, "bulk", "sub=a", 999), Some(1_000));
        assert_eq!(
            suspended_until(&s, "bulk", "sub=a", 1_000),
            None,
            "over at the end"
        );
        assert!(suspend(&s, "bulk", "sub=a", 500));
        assert_eq!(
            suspended_until(&s, "bulk", "sub=a", 999),
            Some(1_000),
            "not shortened"
        );
        assert_eq!(
            suspended_until(&s, "bulk", "sub=b", 999),
            None,
            "others unaffected"
        );
    }
}
