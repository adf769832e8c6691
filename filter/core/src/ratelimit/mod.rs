//! Limits on bulk customer-data endpoints, per identity: request rates
//! (GCRA, exact across workers), record budgets, page sizes and suspension,
//! kept per identity in a bounded table in shared data; and, for rules with
//! `global`, the same budgets fleet-wide through a rate limit service.

pub mod gcra;
pub mod global;
pub mod limits;
pub mod meter;
pub mod page;
pub mod rule;
pub mod salt;
pub mod store;
pub mod suspend;
pub mod table;
