//! The rules Drover keeps, as pure functions of their inputs (no clock reads, no I/O), shared
//! by the coordinator, which enforces them when it serves, and the updater, which enforces
//! them again before it installs.
//!
//! Error policy: parsing and validation return `Err(String)` (or a typed violation such as
//! `ConstraintViolation`) whose text says what was wrong and what is allowed; callers wrap
//! it in their own error type at their edge. Nothing here logs, retries or does I/O.
#![forbid(unsafe_code)]

pub mod codes;
#[cfg(test)]
mod fuzz;
pub mod retry;
pub mod schedule;
pub mod text;
pub mod time;
pub mod version;

pub use codes::{
    AckState, AdminRole, AgentCondition, AuditResult, AuditRole, EventKind, GroupPhase, HaltScope,
    HealthSignal, ReasonCode, RolloutStatus, VerdictOutcome,
};
pub use schedule::{MaintenanceSchedule, Weekdays};
pub use version::{ConstraintViolation, check_constraints, parse_version};
