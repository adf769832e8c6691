//! The secret that keys identity hashing in the limit tables.
//!
//! Without it anyone could compute, offline, which bucket `sub=alice`
//! lands in and fill that bucket with identities of their own to lock her
//! out. One salt per Envoy process, made by the first VM and kept in shared
//! data, so every worker hashes alike (limits stay exact across workers).

use super::store::{create_if_absent, SharedStore};
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

const KEY: &str = "pal:salt";

/// The process's salt, made from `fresh` if no VM made one yet.
pub fn process_salt<S: SharedStore + ?Sized>(store: &S, fresh: impl Fn() -> [u8; 16]) -> [u8; 16] {
    for _ in 0..16 {
        match store.get(KEY) {
            Some((bytes, _)) if bytes.len() == 16 => {
                let mut salt = [0u8; 16];
                salt.copy_from_slice(&bytes);
                return salt;
            }
            // Created and still empty: fill it, unless another VM does first.
            Some((_, cas)) => {
                let _ = store.set(KEY, &fresh(), cas);
            }
            None => create_if_absent(store, KEY),
        }
    }
    // Unreachable in practice (each round either reads a salt or writes
    // one); a VM that never agreed would only lose exactness, not safety.
    fresh()
}

/// 16 random bytes from the standard library's per-process seed (WASI's
/// `random_get` in the filter).
pub fn random_salt() -> [u8; 16] {
    let mut out = [0u8; 16];
    for half in out.chunks_mut(8) {
        let mut h = RandomState::new().build_hasher();
        h.write_u8(0);
        half.copy_from_slice(&h.finish().to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratelimit::store::MemoryStore;

    #[test]
    fn every_vm_gets_the_first_salt() {
        let s = MemoryStore::default();
        let first = process_salt(&s, || [1; 16]);
        let second = process_salt(&s, || [2; 16]);
        assert_eq!((first, second), ([1; 16], [1; 16]));
        assert_ne!(random_salt(), random_salt());
    }
}
