//! A bounded per-VM cache of verified tokens.
//!
//! Verifying RS256 in wasm costs hundreds of microseconds, so a caller that
//! repeats its token must not pay that on every request. Entries are keyed by
//! a SHA-256 of the header name and the token (the token itself is never
//! stored as a key), and are dropped at the token's `exp` at the latest.
//! Eviction is oldest-first once `capacity` is reached.

use super::verify::VerifiedToken;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::time::Duration;

/// Default number of tokens kept per VM.
pub const DEFAULT_CAPACITY: usize = 4096;

/// Cache key: SHA-256 over `header ‖ 0x00 ‖ token`.
pub type CacheKey = [u8; 32];

pub fn cache_key(header: &str, token: &[u8]) -> CacheKey {
    let mut h = Sha256::new();
    h.update(header.as_bytes());
    h.update([0u8]);
    h.update(token);
    h.finalize().into()
}

#[derive(Debug)]
pub struct TokenCache {
    capacity: usize,
    entries: HashMap<CacheKey, Rc<VerifiedToken>>,
    /// Insertion order, for oldest-first eviction.
    order: VecDeque<CacheKey>,
}

impl TokenCache {
    pub fn new(capacity: usize) -> Self {
        TokenCache {
            capacity,
            entries: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Drops every entry (the keys they were verified with changed).
    pub fn clear(&mut self) {
        self.entries.clear();
        self.order.clear();
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The cached token, unless it has reached its `exp` (then it is dropped).
    pub fn get(&mut self, key: &CacheKey, now: Duration) -> Option<Rc<VerifiedToken>> {
        let token = self.entries.get(key)?;
        if now.as_secs_f64() >= token.expires_at {
            self.entries.remove(key);
            return None;
        }
        Some(token.clone())
    }

    /// Stores a token that is still before its `exp`; evicts the oldest entry when full.
    pub fn insert(&mut self, key: CacheKey, token: Rc<VerifiedToken>, now: Duration) {
        if self.capacity == 0 || now.as_secs_f64() >= token.expires_at {
            return;
        }
        if self.entries.insert(key, token).is_none() {
            self.order.push_back(key);
        }
        while self.entries.len() > self.capacity {
            match self.order.pop_front() {
                Some(old) => {
                    self.entries.remove(&old);
                }
                None => break,
            }
        }
        // `order` may hold keys already dropped by `get`; keep it bounded too.
        if self.order.len() > self.capacity.saturating_mul(2) {
            let entries = &self.entries;
            self.order.retain(|k| entries.contains_key(k));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    fn token(exp: f64) -> Rc<VerifiedToken> {
        Rc::new(VerifiedToken {
            provider: "p".into(),
            from_header: "authorization".into(),
            header: Map::new(),
            payload: Map::new(),
            expires_at: exp,
            document: regorus::Value::Null,
        })
    }

    const NOW: Duration = Duration::from_secs(1_000);

    #[test]
    fn hit_before_exp_miss_after() {
        let mut c = TokenCache::new(8);
        let k = cache_key("authorization", b"t");
        c.insert(k, token(1_010.0), NOW);
        assert!(c.get(&k, NOW).is_some());
        assert!(c.get(&k, Duration::from_secs(1_010)).is_none());
        assert!(c.is_empty(), "expired entry is dropped");
    }

    #[test]
    fn never_stores_an_expired_token() {
        let mut c = TokenCache::new(8);
        c.insert(cache_key("a", b"t"), token(999.0), NOW);
        assert!(c.is_empty());
    }

    #[test]
    fn bounded_with_oldest_first_eviction() {
        let mut c = TokenCache::new(3);
        for i in 0..10u8 {
            c.insert(cache_key("a", &[i]), token(2_000.0), NOW);
        }
        assert_eq!(c.len(), 3);
        assert!(c.get(&cache_key("a", &[0]), NOW).is_none());
        assert!(c.get(&cache_key("a", &[9]), NOW).is_some());
    }

    #[test]
    fn key_depends_on_header_and_token() {
        assert_ne!(cache_key("authorization", b"t"), cache_key("x-jwt", b"t"));
        assert_ne!(cache_key("a", b"t1"), cache_key("a", b"t2"));
    }
}
