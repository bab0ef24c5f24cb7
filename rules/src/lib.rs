//! The rules Drover keeps, as pure functions of their inputs (no clock reads, no I/O), shared
//! by the coordinator, which enforces them when it serves, and the updater, which enforces
//! them again before it installs.
#![forbid(unsafe_code)]

pub mod codes;
pub mod schedule;
pub mod time;
pub mod version;

pub use codes::{EventKind, RolloutStatus};
pub use schedule::{MaintenanceSchedule, Weekdays};
pub use version::{ConstraintViolation, check_constraints, parse_version};
