//! The clock rollouts run on: the wall clock, or (for tests of rollouts) a manual clock that
//! moves only when told, so hours of windows and waits pass in seconds. The manual clock
//! exists only in a build with the `testing` feature; a normal build refuses to start on it.

#[cfg(feature = "testing")]
use std::sync::atomic::{AtomicI64, Ordering};

use crate::{
    domain::now_ms,
    error::{DroverError, Result},
};

pub enum FleetClock {
    System,
    #[cfg(feature = "testing")]
    Manual(AtomicI64),
}

impl FleetClock {
    /// `Some(start)`: a manual clock, refused unless built with the `testing` feature.
    pub fn new(manual_start_ms: Option<i64>) -> Result<Self> {
        match manual_start_ms {
            None => Ok(Self::System),
            #[cfg(feature = "testing")]
            Some(start) => Ok(Self::Manual(AtomicI64::new(start))),
            #[cfg(not(feature = "testing"))]
            Some(_) => Err(DroverError::invalid(
                "--manual-clock-start-ms is for tests only, and this drover-coordinator was \
                 built without them; run it without the flag (tests use a build made with \
                 `cargo build -p drover-coordinator --features testing`)",
            )),
        }
    }

    pub fn now_ms(&self) -> i64 {
        match self {
            Self::System => now_ms(),
            #[cfg(feature = "testing")]
            Self::Manual(now) => now.load(Ordering::SeqCst),
        }
    }

    /// Moves a manual clock forward; the wall clock cannot be moved.
    #[cfg(feature = "testing")]
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
