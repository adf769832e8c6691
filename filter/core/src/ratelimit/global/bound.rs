//! How far the fleet can exceed a fleet-wide record budget, exactly.
//!
//! A response's records are only known once they have streamed, so the
//! service cannot reserve them up front: each request reads what is left
//! (a check with `hits_addend` 0), gets a lease of at most that much
//! ([`super::Lease`]: what is left, capped at `max_page_size.max`), streams
//! at most the lease, and charges what it delivered afterwards (counted
//! even past the budget, the service's `charge: "always"`). Requests of one
//! identity that overlap — read before another's charge landed — can all
//! be leased the same records.
//!
//! **The bound.** Let `B` be the budget of one window of the service's
//! records counter, `P` the page cap (`B` without one), `p = min(P, B)`,
//! and `k` the most requests of one identity *in flight* at once across
//! the whole fleet, in flight meaning from its check to its charge being
//! counted. If every charge is counted, the records delivered under leases
//! read in one window are at most
//!
//! ```text
//! B + (k − 1) · p
//! ```
//!
//! *Proof.* Take the last request `z` whose check was granted a lease, and
//! `C` the count it read. The delivered records are: those already charged
//! when `z` read (exactly `C`), `z`'s own (at most `B − C`, its lease), and
//! those of requests granted before `z` read but charged after: at most
//! `k − 1` of them (they were in flight together with `z`), each at most
//! `p` (a lease is at most the page cap, and at most what was left, `B`).
//! Requests checked after `z` were refused and delivered nothing; requests
//! read as 0 left or over the budget are refused too. So the total is at
//! most `C + (B − C) + (k − 1)·p`.
//!
//! *Tight.* Charge `B − p` sequentially, then let `k` requests read at
//! once: each is leased `p`, and together they deliver `B + (k − 1)·p`.
//! (The tests search every schedule of small cases and find exactly this.)
//!
//! **Beyond the bound, honestly:**
//! - a charge that fails ([`super::ChargeOutcome::Failed`]) leaves its
//!   records uncounted: each adds up to its lease, and each is counted by
//!   its reason;
//! - with `on_failure: "local"` (not the default for records), requests
//!   decided while the service fails are bounded only by each process's
//!   local budget: up to `B` per Envoy process during the outage;
//! - the window is fixed (it starts with the counter's first hit): across
//!   a window boundary up to twice the bound can pass, as with any fixed
//!   window, the local limits' included;
//! - the service's own two steps (check, then count) race the same way and
//!   are covered by the same argument: its count is never lost, only read
//!   late.

/// The most records beyond `budget` the fleet can deliver to one identity
/// in one window of the service's records counter, with at most
/// `in_flight` of its requests in flight at once across the fleet and pages
/// capped at `page_max` (see the module documentation for the proof and
/// what it assumes).
pub fn max_overshoot(budget: u64, page_max: Option<u64>, in_flight: u64) -> u64 {
    let per_lease = page_max.map_or(budget, |p| p.min(budget));
    in_flight.saturating_sub(1).saturating_mul(per_lease)
}

/// The most records the fleet can deliver to one identity in one window:
/// the budget plus [`max_overshoot`].
pub fn max_delivered(budget: u64, page_max: Option<u64>, in_flight: u64) -> u64 {
    budget.saturating_add(max_overshoot(budget, page_max, in_flight))
}

#[cfg(test)]
#[path = "bound_tests.rs"]
mod tests;
