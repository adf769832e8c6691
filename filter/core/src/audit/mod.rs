//! The audit trail: one record per decision, in OPA's decision-log shape,
//! masked, and linked into a tamper-evident hash chain.

pub mod canonical;
pub mod chain;
pub mod config;
pub mod mask;
pub mod outbox;
pub mod record;
pub mod sign;
pub mod spike;
pub mod verify;
pub mod writer;
