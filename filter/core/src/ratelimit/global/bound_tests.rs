use super::*;
use crate::ratelimit::global::Lease;
use std::collections::HashMap;

#[test]
fn one_request_at_a_time_is_exact() {
    assert_eq!(max_overshoot(10_000, Some(500), 1), 0);
    assert_eq!(max_overshoot(10_000, None, 1), 0);
    assert_eq!(max_overshoot(10_000, Some(500), 0), 0);
    assert_eq!(max_delivered(10_000, Some(500), 1), 10_000);
}

#[test]
fn each_extra_request_in_flight_can_overshoot_one_lease() {
    // The README's customer-bulk rule: 10,000 records, pages of 500.
    assert_eq!(max_overshoot(10_000, Some(500), 3), 1_000);
    assert_eq!(max_delivered(10_000, Some(500), 50), 10_000 + 49 * 500);
    // No page cap: a lease can be the whole budget.
    assert_eq!(max_overshoot(10_000, None, 3), 20_000);
    // A page cap above the budget caps nothing.
    assert_eq!(max_overshoot(100, Some(500), 3), 200);
    assert_eq!(max_delivered(u64::MAX, None, 3), u64::MAX, "saturates");
}

/// The model: a budget `b`, the service's counter `c`. A request reads `c`
/// (a 0-hit check) and is refused if nothing is left, else leased
/// `Lease::new(b − c, page)`; later it delivers any amount up to its
/// lease and charges it (counted even past `b`). At most `k` requests are
/// in flight at once; `n` requests in all.
#[derive(Clone, Copy)]
struct Model {
    b: u64,
    page: Option<u64>,
    k: usize,
    n: u32,
}

impl Model {
    /// The most records any schedule delivers.
    fn worst(&self) -> u64 {
        let mut memo = HashMap::new();
        self.search(0, Vec::new(), 0, &mut memo)
    }

    fn search(
        &self,
        c: u64,
        mut flying: Vec<u64>,
        started: u32,
        memo: &mut HashMap<(u64, Vec<u64>, u32), u64>,
    ) -> u64 {
        flying.sort_unstable();
        let key = (c, flying.clone(), started);
        if let Some(best) = memo.get(&key) {
            return *best;
        }
        let mut best = 0;
        // Start a request: the service's answer to a 0-hit check.
        if flying.len() < self.k && started < self.n {
            let remaining = self.b.saturating_sub(c);
            if c <= self.b && remaining > 0 {
                let lease = Lease::new(remaining, self.page).records;
                let mut next = flying.clone();
                next.push(lease);
                best = best.max(self.search(c, next, started + 1, memo));
            }
        }
        // Finish one: deliver and charge any amount up to its lease.
        for i in 0..flying.len() {
            let mut next = flying.clone();
            let lease = next.remove(i);
            for d in 0..=lease {
                best = best.max(d + self.search(c + d, next.clone(), started, memo));
            }
        }
        memo.insert(key, best);
        best
    }
}

/// Every schedule of small cases: the bound holds, and some schedule
/// reaches it.
#[test]
fn the_bound_is_exact_over_every_schedule() {
    for b in 1..=5 {
        for page in [None, Some(1), Some(2), Some(3), Some(6)] {
            for k in 1..=3 {
                let model = Model { b, page, k, n: 7 };
                let bound = max_delivered(b, page, k as u64);
                assert_eq!(
                    model.worst(),
                    bound,
                    "budget {b}, page {page:?}, {k} in flight"
                );
            }
        }
    }
}
