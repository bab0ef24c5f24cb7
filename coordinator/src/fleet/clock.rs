//! The clock rollouts run on: the wall clock, or (for tests and demos of rollouts) a manual
//! clock that moves only when told, so hours of windows and waits pass in seconds.

use std::sync::atomic::{AtomicI64, Ordering};

use crate::{
    domain::now_ms,
    error::{DroverError, Result},
};

pub enum FleetClock {
    System,
    Manual(AtomicI64),
}

impl FleetClock {
    pub fn new(manual_start_ms: Option<i64>) -> Self {
        match manual_start_ms {
            Some(start) => Self::Manual(AtomicI64::new(start)),
            None => Self::System,
        }
    }

    pub fn now_ms(&self) -> i64 {
        match self {
            Self::System => now_ms(),
            Self::Manual(now) => now.load(Ordering::SeqCst),
        }
    }

    /// Moves a manual clock forward; the wall clock cannot be moved.
    pub fn advance(&self, by_ms: i64) -> Result<i64> {
        match self {
            Self::System => Err(DroverError::FailedPrecondition(
                "this coordinator runs on the wall clock; start it with --manual-clock-start-ms to move time by hand"
                    .into(),
            )),
            Self::Manual(_) if by_ms < 0 => Err(DroverError::invalid("time only moves forward")),
            Self::Manual(now) => Ok(now.fetch_add(by_ms, Ordering::SeqCst) + by_ms),
        }
    }
}
