//! Test harness for black-box tests: start the real binaries on loopback, drive them with
//! droverctl and gRPC, and give each test its own SQLite file or PostgreSQL database.
#![forbid(unsafe_code)]

mod postgres;
mod process;
mod release;

pub use postgres::TestPostgres;
pub use process::{
    CoordinatorBuilder, CoordinatorProcess, UpdaterBuilder, UpdaterProcess, bin, droverctl,
    droverctl_json,
};
pub use release::{AgentHost, ReleaseRepo, SigningKey};

use std::time::{Duration, Instant};

/// Polls `check` until it returns `Some`, or fails with `what` after `timeout`.
pub async fn eventually<T>(
    what: &str,
    timeout: Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
