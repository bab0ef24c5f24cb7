//! Per-session budgets for what an updater sends. A well-behaved updater sends a heartbeat
//! per interval and a report per update. Reports past their budget wait: the session is read
//! no faster than the budget allows, so an updater back from an outage with many pending
//! reports drains them at that pace, and a flood costs the store a bounded rate of writes.
//! Heartbeats past theirs end the session with `RESOURCE_EXHAUSTED` (no honest updater sends
//! that many); it reconnects after its backoff. Either way only that agent is slowed.

use std::{num::NonZeroU32, time::Duration};

use governor::{Quota, RateLimiter, clock::Clock};
use tonic::Status;

/// Reports at once (an updater back from a long outage may hold several).
const REPORT_BURST: u32 = 50;
/// Sustained reports: two a second is far above any real update rate.
const REPORT_PERIOD: Duration = Duration::from_millis(500);
/// Heartbeats at once, and per heartbeat interval sustained (health changes send early).
const HEARTBEAT_BURST: u32 = 20;
const HEARTBEATS_PER_INTERVAL: u32 = 5;

type Bucket = RateLimiter<
    governor::state::NotKeyed,
    governor::state::InMemoryState,
    governor::clock::DefaultClock,
>;

pub struct InboundBudget {
    reports: Bucket,
    heartbeats: Bucket,
}

fn bucket(period: Duration, burst: u32) -> Bucket {
    let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
    let quota = Quota::with_period(period.max(Duration::from_millis(1)))
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(burst);
    RateLimiter::direct(quota)
}

impl InboundBudget {
    pub fn new(heartbeat_interval: Duration) -> Self {
        Self {
            reports: bucket(REPORT_PERIOD, REPORT_BURST),
            heartbeats: bucket(
                heartbeat_interval / HEARTBEATS_PER_INTERVAL,
                HEARTBEAT_BURST,
            ),
        }
    }

    /// How long the next report must wait for its budget; `None`: it may go now (and is
    /// counted).
    pub fn report_wait(&self) -> Option<Duration> {
        self.reports.check().err().map(|not_until| {
            not_until.wait_time_from(governor::clock::DefaultClock::default().now())
        })
    }

    /// Ok while within the heartbeat budget; the status that ends the session once over it.
    pub fn spend_heartbeat(&self) -> Result<(), Status> {
        self.heartbeats.check().map_err(|_| {
            Status::resource_exhausted(
                "too many heartbeats on this session; reconnect with backoff and send them at \
                 the interval given in Welcome",
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_past_the_burst_wait_and_heartbeats_past_theirs_are_refused() {
        let budget = InboundBudget::new(Duration::from_secs(10));
        let now = (0..10_000)
            .take_while(|_| budget.report_wait().is_none())
            .count();
        assert_eq!(now, REPORT_BURST as usize);
        let wait = budget.report_wait().expect("the next report waits");
        assert!(wait <= REPORT_PERIOD, "{wait:?}");
        let heartbeats = (0..10_000)
            .take_while(|_| budget.spend_heartbeat().is_ok())
            .count();
        assert_eq!(
            heartbeats, HEARTBEAT_BURST as usize,
            "reports are not heartbeats"
        );
        let refused = budget.spend_heartbeat().unwrap_err();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
    }
}
