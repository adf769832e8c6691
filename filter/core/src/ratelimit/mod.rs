//! Limits on bulk customer-data endpoints, per identity: request rates
//! (GCRA, exact across workers), page sizes, and suspension.

pub mod gcra;
pub mod limits;
pub mod meter;
pub mod page;
pub mod rule;
pub mod store;
pub mod suspend;
