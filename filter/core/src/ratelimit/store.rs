//! Host shared data, as the rate limiter sees it: bytes under a key, with a
//! compare-and-swap token, shared by every VM (worker) of one Envoy.

use std::cell::RefCell;
use std::collections::HashMap;

/// A write lost a race: the value changed since it was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CasMismatch;

/// Shared data with Envoy's semantics: `set` with a non-zero `cas` succeeds
/// only if the value still has that token; `cas = 0` writes unconditionally.
pub trait SharedStore {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)>;
    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), CasMismatch>;
}

/// An in-memory store for tests, with the same CAS rules.
#[derive(Debug, Default)]
pub struct MemoryStore {
    entries: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    next: RefCell<u32>,
    /// Writes to fail with a CAS mismatch before succeeding (contention tests).
    pub fail_next_writes: RefCell<u32>,
}

impl SharedStore for MemoryStore {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.entries.borrow().get(key).cloned()
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), CasMismatch> {
        {
            let mut failing = self.fail_next_writes.borrow_mut();
            if *failing > 0 {
                *failing -= 1;
                return Err(CasMismatch);
            }
        }
        let mut entries = self.entries.borrow_mut();
        // As in Envoy: the token is checked only against an existing key.
        if cas != 0 && entries.get(key).is_some_and(|(_, c)| *c != cas) {
            return Err(CasMismatch);
        }
        let mut next = self.next.borrow_mut();
        *next = next.wrapping_add(1).max(1);
        entries.insert(key.to_owned(), (value.to_vec(), *next));
        Ok(())
    }
}

impl<T: SharedStore + ?Sized> SharedStore for &T {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        (**self).get(key)
    }
    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), CasMismatch> {
        (**self).set(key, value, cas)
    }
}

impl<T: SharedStore + ?Sized> SharedStore for std::rc::Rc<T> {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        (**self).get(key)
    }
    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), CasMismatch> {
        (**self).set(key, value, cas)
    }
}

/// Key whose writes mint fresh CAS tokens; see [`create_if_absent`].
const TOKEN_MINT: &str = "pal:token-mint";

/// Creates `key` holding no state, unless it exists. Envoy writes to a
/// missing key whatever CAS token is given, and checks the token only against
/// an existing key; so the write carries a token just minted for another key,
/// which no existing key can hold, and never overwrites anyone's state.
pub fn create_if_absent<S: SharedStore + ?Sized>(store: &S, key: &str) {
    let _ = store.set(TOKEN_MINT, &[], 0);
    let fresh = store.get(TOKEN_MINT).map_or(u32::MAX, |(_, cas)| cas);
    let _ = store.set(key, &[], fresh);
}

/// Adds `n` to a counter that restarts every `window` seconds (windows are
/// aligned to the epoch) and returns the new total, or `None` if shared data
/// was too contended to update (callers fail closed).
pub fn add_in_window<S: SharedStore + ?Sized>(
    store: &S,
    key: &str,
    window: u64,
    now_secs: u64,
    n: u64,
) -> Option<u64> {
    update_window(store, key, window, now_secs, |_| n).map(|(_, total)| total)
}

/// Takes up to `want` from a budget of `limit` per window: adds
/// `min(want, limit - used)` to the window's counter and returns that grant,
/// or `None` if shared data was too contended (callers grant nothing).
pub fn reserve_in_window<S: SharedStore + ?Sized>(
    store: &S,
    key: &str,
    window: u64,
    now_secs: u64,
    want: u64,
    limit: u64,
) -> Option<u64> {
    update_window(store, key, window, now_secs, |used| {
        want.min(limit.saturating_sub(used))
    })
    .map(|(added, _)| added)
}

/// Adds `amount(used)` to the window counter at `key` by compare-and-swap;
/// returns what was added and the new total.
fn update_window<S: SharedStore + ?Sized>(
    store: &S,
    key: &str,
    window: u64,
    now_secs: u64,
    amount: impl Fn(u64) -> u64,
) -> Option<(u64, u64)> {
    let start = now_secs - now_secs % window.max(1);
    for _ in 0..super::gcra::MAX_CAS_ATTEMPTS {
        let Some((bytes, cas)) = store.get(key) else {
            create_if_absent(store, key);
            continue;
        };
        let (start, used) = current_window(&bytes, start);
        let added = amount(used);
        let total = used.saturating_add(added);
        let mut value = start.to_le_bytes().to_vec();
        value.extend(total.to_le_bytes());
        if store.set(key, &value, cas).is_ok() {
            return Some((added, total));
        }
    }
    None
}

/// The count in the current window (0 if none), as seen from `now_secs`.
pub fn read_in_window<S: SharedStore + ?Sized>(
    store: &S,
    key: &str,
    window: u64,
    now_secs: u64,
) -> u64 {
    let start = now_secs - now_secs % window.max(1);
    store
        .get(key)
        .map_or(0, |(bytes, _)| current_window(&bytes, start).1)
}

/// The window a stored counter belongs to and its count, from the view of a
/// caller in window `start`: an older window is over (count 0); a later one
/// (another worker's clock is ahead) is kept, never reset.
fn current_window(bytes: &[u8], start: u64) -> (u64, u64) {
    let stored_start = bytes.get(..8).and_then(read_u64);
    let stored = bytes.get(8..).and_then(read_u64).unwrap_or(0);
    match stored_start {
        Some(s) if s >= start => (s, stored),
        _ => (start, 0),
    }
}

/// A `u64` stored as 8 little-endian bytes.
pub fn read_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_counter_adds_and_restarts() {
        let s = MemoryStore::default();
        assert_eq!(add_in_window(&s, "k", 300, 1_000, 2), Some(2));
        assert_eq!(add_in_window(&s, "k", 300, 1_199, 3), Some(5));
        assert_eq!(read_in_window(&s, "k", 300, 1_199), 5);
        assert_eq!(add_in_window(&s, "k", 300, 1_200, 1), Some(1), "new window");
        assert_eq!(
            read_in_window(&s, "k", 300, 1_500),
            0,
            "a later window starts empty"
        );
    }

    #[test]
    fn creating_a_key_never_overwrites_one_another_worker_just_created() {
        let s = MemoryStore::default();
        // Worker A and B both saw the key missing; A creates it and counts.
        create_if_absent(&s, "k");
        assert_eq!(add_in_window(&s, "k", 300, 1_000, 7), Some(7));
        // B's late creation must not wipe A's count.
        create_if_absent(&s, "k");
        assert_eq!(read_in_window(&s, "k", 300, 1_000), 7);
    }

    #[test]
    fn a_late_clock_does_not_reset_a_newer_window() {
        let s = MemoryStore::default();
        assert_eq!(add_in_window(&s, "k", 300, 1_200, 5), Some(5));
        assert_eq!(
            add_in_window(&s, "k", 300, 1_199, 1),
            Some(6),
            "counted in the newer window"
        );
    }

    #[test]
    fn window_counter_gives_up_under_contention() {
        let s = MemoryStore::default();
        *s.fail_next_writes.borrow_mut() = 1_000;
        assert_eq!(add_in_window(&s, "k", 60, 0, 1), None);
    }
}
