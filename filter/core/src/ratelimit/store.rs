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

impl MemoryStore {
    /// Every key ever written (shared data never forgets a key).
    pub fn keys(&self) -> Vec<String> {
        self.entries.borrow().keys().cloned().collect()
    }
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

/// A `u64` stored as 8 little-endian bytes.
pub fn read_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creating_a_key_never_overwrites_one_another_worker_just_created() {
        let s = MemoryStore::default();
        // Workers A and B both saw the key missing; A creates it and writes.
        create_if_absent(&s, "k");
        let (_, cas) = s.get("k").unwrap();
        s.set("k", b"state", cas).unwrap();
        // B's late creation must not wipe A's state.
        create_if_absent(&s, "k");
        assert_eq!(s.get("k").unwrap().0, b"state");
    }
}
