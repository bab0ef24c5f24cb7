//! Per-session budgets for what an updater sends. A well-behaved updater sends a heartbeat
//! per interval and a report per update; one that floods (a bug, or an attacker holding an
//! agent's identity) has its session ended with `RESOURCE_EXHAUSTED` and reconnects after its
//! backoff, so the flood costs the store a bounded number of writes and degrades only that
//! agent. Unacknowledged reports stay pending in the updater and arrive later.

use std::{num::NonZeroU32, time::Duration};

use governor::{Quota, RateLimiter};
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

#[derive(Debug, Clone, Copy)]
pub enum Inbound {
    Heartbeat,
    Report,
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

    /// Ok while within budget; the status that ends the session once over it.
    pub fn spend(&self, what: Inbound) -> Result<(), Status> {
        let (bucket, noun) = match what {
            Inbound::Heartbeat => (&self.heartbeats, "heartbeats"),
            Inbound::Report => (&self.reports, "update reports"),
        };
        bucket.check().map_err(|_| {
            Status::resource_exhausted(format!(
                "too many {noun} on this session; reconnect with backoff and send them at \
                 the pace given in Welcome (unacknowledged reports are kept: resend them)"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_cut_after_the_burst_and_each_kind_has_its_own_budget() {
        let budget = InboundBudget::new(Duration::from_secs(10));
        let accepted = (0..10_000)
            .take_while(|_| budget.spend(Inbound::Report).is_ok())
            .count();
        assert_eq!(accepted, REPORT_BURST as usize);
        let refused = budget.spend(Inbound::Report).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert!(
            budget.spend(Inbound::Heartbeat).is_ok(),
            "heartbeats are not reports"
        );
    }
}
