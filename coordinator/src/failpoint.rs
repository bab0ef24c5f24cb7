//! Named crash points for deterministic crash tests, compiled only with the `failpoints`
//! feature (the test suite builds a separate `drover-coordinator-testing` binary with the
//! `failpoints` and `testing` features; release builds have none). Armed at start-up from
//! `DROVER_FAILPOINTS`, e.g.
//! `rollout.finish.before_channel_switch=crash;report.before_event=error*2`:
//!
//! - `crash`: log the point's name and abort the process there (no clean-up, like a kill);
//!   `crash@N`: pass the first N-1 times, crash the Nth;
//! - `error` / `error*N`: return a store error (every time / the first N times), as a
//!   transient database failure would;
//! - `delay(MS)`: wait MS milliseconds there, at a [`pause_point!`] (state that is slow to
//!   load, so clients arrive before it is).
//!
//! Points inside a transaction use [`failpoint!`]: an error returns from the enclosing
//! function, so the transaction rolls back. Points after a commit use [`crash_point!`],
//! which only crashes: a call whose change committed must not report failure.

#[cfg(feature = "failpoints")]
mod armed {
    use std::{collections::HashMap, sync::OnceLock};

    use parking_lot::Mutex;

    use crate::error::{DroverError, ErrorId, StoreProblem};

    enum Action {
        /// Crash once this many more hits have passed.
        Crash {
            pass: u32,
        },
        Error {
            remaining: Option<u32>,
        },
        Delay {
            ms: u64,
        },
    }

    fn points() -> &'static Mutex<HashMap<String, Action>> {
        static POINTS: OnceLock<Mutex<HashMap<String, Action>>> = OnceLock::new();
        POINTS.get_or_init(|| {
            let spec = std::env::var("DROVER_FAILPOINTS").unwrap_or_default();
            let mut points = HashMap::new();
            for entry in spec.split(';').filter(|e| !e.trim().is_empty()) {
                let (name, action) = entry.split_once('=').unwrap_or((entry, "crash"));
                let action = match action.trim() {
                    "crash" => Action::Crash { pass: 0 },
                    "error" => Action::Error { remaining: None },
                    other if other.starts_with("delay(") && other.ends_with(')') => {
                        let ms = other["delay(".len()..other.len() - 1]
                            .parse()
                            .unwrap_or_else(|_| {
                                panic!(
                                    "DROVER_FAILPOINTS: delay(MS) needs milliseconds, got '{other}'"
                                )
                            });
                        Action::Delay { ms }
                    }
                    other => {
                        let count = |prefix: &str| other.strip_prefix(prefix)?.parse::<u32>().ok();
                        match (count("crash@"), count("error*")) {
                            (Some(n), _) if n > 0 => Action::Crash { pass: n - 1 },
                            (_, Some(n)) => Action::Error { remaining: Some(n) },
                            _ => panic!("DROVER_FAILPOINTS: unknown action '{other}' for {name}"),
                        }
                    }
                };
                points.insert(name.trim().to_string(), action);
            }
            Mutex::new(points)
        })
    }

    /// A point after a commit: crashes if so armed; an `error` arming is refused loudly.
    pub fn crash_only(name: &str) {
        if let Some(err) = hit(name) {
            panic!("failpoint {name} sits after a commit and may only crash ({err})");
        }
    }

    /// How long the pause point named `name` waits (`delay(MS)`), if armed so.
    pub fn delay(name: &str) -> Option<std::time::Duration> {
        match points().lock().get(name)? {
            Action::Delay { ms } => Some(std::time::Duration::from_millis(*ms)),
            _ => panic!("failpoint {name} is a pause point and may only delay"),
        }
    }

    /// What the point named `name` does now: `Some(error)` to fail, `None` to go on.
    pub fn hit(name: &str) -> Option<DroverError> {
        let mut points = points().lock();
        match points.get_mut(name)? {
            Action::Delay { .. } => panic!("failpoint {name} may crash or fail, not delay"),
            Action::Crash { pass } if *pass > 0 => {
                *pass -= 1;
                None
            }
            Action::Crash { .. } => {
                eprintln!("failpoint {name}: crashing here");
                std::process::abort();
            }
            Action::Error { remaining } => {
                if let Some(n) = remaining {
                    if *n == 0 {
                        return None;
                    }
                    *n -= 1;
                }
                let error_id = ErrorId::new();
                tracing::warn!(failpoint = name, %error_id, "failpoint: injecting a store error");
                Some(DroverError::StoreUnavailable {
                    error_id,
                    problem: StoreProblem::Unreachable,
                })
            }
        }
    }
}

#[cfg(feature = "failpoints")]
pub use armed::{crash_only, delay, hit};

/// `failpoint!("name")`: with the `failpoints` feature, crash or fail here as armed;
/// without it, nothing at all.
macro_rules! failpoint {
    ($name:literal) => {
        #[cfg(feature = "failpoints")]
        {
            if let Some(err) = crate::failpoint::hit($name) {
                return Err(err);
            }
        }
    };
}
pub(crate) use failpoint;

/// `crash_point!("name")`: a point after a commit; with the `failpoints` feature it crashes
/// here if armed; without it, nothing at all.
macro_rules! crash_point {
    ($name:literal) => {
        #[cfg(feature = "failpoints")]
        crate::failpoint::crash_only($name);
    };
}
pub(crate) use crash_point;

/// `pause_point!("name")`, in async code: with the `failpoints` feature, waits here as
/// armed (`delay(MS)`); without it, nothing at all.
macro_rules! pause_point {
    ($name:literal) => {
        #[cfg(feature = "failpoints")]
        if let Some(wait) = crate::failpoint::delay($name) {
            tracing::warn!(failpoint = $name, ?wait, "failpoint: pausing here");
            tokio::time::sleep(wait).await;
        }
    };
}
pub(crate) use pause_point;
