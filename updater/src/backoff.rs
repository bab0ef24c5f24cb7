//! Reconnect delays: capped exponential backoff with full jitter, so a restarted coordinator
//! is not hit by every updater at the same instant.

use std::time::Duration;

#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(500),
            cap: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// The delay before retry number `attempt` (0-based), given a uniform `random` in [0, 1).
    pub fn delay(&self, attempt: u32, random: f64) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(2u32.saturating_pow(attempt.min(20)))
            .min(self.cap);
        ceiling.mul_f64(random.clamp(0.0, 1.0))
    }
}

/// The wait before reconnecting when the coordinator said "busy, retry in `pushback`": at
/// least what it asked (spread over half as much again, so the refused do not come back
/// together) and never less than the backoff would have waited anyway.
pub fn honouring(backoff: Duration, pushback: Option<Duration>, random: f64) -> Duration {
    match pushback {
        Some(pushback) => backoff.max(pushback.mul_f64(1.0 + 0.5 * random.clamp(0.0, 1.0))),
        None => backoff,
    }
}

/// The wait a refusal asked for ("busy, retry in N s"), if the coordinator sent one.
pub fn pushback(err: &anyhow::Error) -> Option<Duration> {
    let status = err
        .chain()
        .find_map(|e| e.downcast_ref::<tonic::Status>())?;
    let value = status
        .metadata()
        .get(drover_rules::retry::PUSHBACK_METADATA)?;
    drover_rules::retry::parse_pushback(value.to_str().ok()?)
}

/// `interval` scaled by a uniform factor in [1 - spread, 1 + spread].
pub fn jittered(interval: Duration, spread: f64, random: f64) -> Duration {
    let factor = 1.0 - spread + 2.0 * spread * random.clamp(0.0, 1.0);
    interval.mul_f64(factor.max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Refused together, updaters come back spread over the whole half-again, not bunched
    /// at the wait asked for.
    #[test]
    fn a_pushback_is_spread_over_half_as_much_again() {
        let pushback = Duration::from_secs(2);
        let wait = |r| honouring(Duration::ZERO, Some(pushback), r);
        assert_eq!(wait(0.0), pushback);
        assert_eq!(wait(0.5), Duration::from_millis(2_500));
        assert!(wait(0.999) > Duration::from_millis(2_990));
        assert!(wait(0.25) < wait(0.26), "no two draws wait alike");
    }

    proptest! {
        #[test]
        fn a_pushback_is_honoured_and_bounded(
            backoff_ms in 0u64..60_000, pushback_ms in proptest::option::of(0u64..60_000), r in 0.0f64..1.0,
        ) {
            let backoff = Duration::from_millis(backoff_ms);
            let pushback = pushback_ms.map(Duration::from_millis);
            let wait = honouring(backoff, pushback, r);
            prop_assert!(wait >= backoff);
            if let Some(pushback) = pushback {
                prop_assert!(wait >= pushback);
                prop_assert!(wait <= backoff.max(pushback.mul_f64(1.5)));
            } else {
                prop_assert_eq!(wait, backoff);
            }
        }


        #[test]
        fn delay_is_never_above_the_cap_or_the_exponential_ceiling(attempt in 0u32..100, r in 0.0f64..1.0) {
            let b = Backoff::default();
            let d = b.delay(attempt, r);
            prop_assert!(d <= b.cap);
            prop_assert!(d <= b.base.saturating_mul(2u32.saturating_pow(attempt.min(20))));
        }

        #[test]
        fn jitter_stays_within_its_spread(secs in 1u64..10_000, r in 0.0f64..1.0) {
            let d = jittered(Duration::from_secs(secs), 0.2, r);
            prop_assert!(d >= Duration::from_secs(secs).mul_f64(0.8) - Duration::from_millis(1));
            prop_assert!(d <= Duration::from_secs(secs).mul_f64(1.2) + Duration::from_millis(1));
        }
    }

    #[test]
    fn grows_then_caps() {
        let b = Backoff::default();
        assert_eq!(b.delay(0, 0.999_999).as_millis(), 499);
        assert_eq!(b.delay(3, 0.999_999).as_millis(), 3_999);
        assert_eq!(b.delay(30, 0.999_999).as_secs(), 29);
    }
}
