//! Per-agent budgets for what an updater sends, kept by agent id across its sessions (a
//! reconnect does not refill them). A well-behaved updater says hello once per connection,
//! sends a heartbeat per interval and a report per update.
//!
//! - Reports past their budget wait: the session is read no faster than the budget allows,
//!   so an updater back from an outage with many pending reports drains them at that pace,
//!   and a flood costs the store a bounded rate of writes.
//! - Heartbeats past theirs end the session with `RESOURCE_EXHAUSTED` (no honest updater
//!   sends that many); it reconnects after its backoff.
//! - Hellos past theirs (a reconnect loop: each hello writes the agent's row) are refused
//!   with `RESOURCE_EXHAUSTED` until the budget refills.
//!
//! Either way only that agent is slowed. Buckets of agents that went quiet are dropped now
//! and then, so memory follows the live fleet.

use std::{
    num::NonZeroU32,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter, clock::Clock};
use tonic::Status;

/// Reports at once (an updater back from a long outage may hold several).
const REPORT_BURST: u32 = 50;
/// Sustained reports: two a second is far above any real update rate.
const REPORT_PERIOD: Duration = Duration::from_millis(500);
/// Heartbeats at once, and per heartbeat interval sustained (health changes send early).
const HEARTBEAT_BURST: u32 = 20;
const HEARTBEATS_PER_INTERVAL: u32 = 5;
/// Sessions opened at once, then one per period: far above an updater's backoff.
const HELLO_BURST: u32 = 10;
const HELLO_PERIOD: Duration = Duration::from_secs(6);
/// Every this many hellos, the buckets of quiet agents are dropped.
const FORGET_EVERY: u64 = 4096;

pub struct AgentBudgets {
    reports: DefaultKeyedRateLimiter<String>,
    heartbeats: DefaultKeyedRateLimiter<String>,
    hellos: DefaultKeyedRateLimiter<String>,
    hellos_seen: AtomicU64,
}

fn keyed(period: Duration, burst: u32) -> DefaultKeyedRateLimiter<String> {
    let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
    let quota = Quota::with_period(period.max(Duration::from_millis(1)))
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(burst);
    RateLimiter::keyed(quota)
}

impl AgentBudgets {
    pub fn new(heartbeat_interval: Duration) -> Self {
        Self {
            reports: keyed(REPORT_PERIOD, REPORT_BURST),
            heartbeats: keyed(
                heartbeat_interval / HEARTBEATS_PER_INTERVAL,
                HEARTBEAT_BURST,
            ),
            hellos: keyed(HELLO_PERIOD, HELLO_BURST),
            hellos_seen: AtomicU64::new(0),
        }
    }

    /// How long `agent`'s next report must wait for its budget; `None`: it may go now (and
    /// is counted).
    pub fn report_wait(&self, agent: &String) -> Option<Duration> {
        self.reports.check_key(agent).err().map(|not_until| {
            not_until.wait_time_from(governor::clock::DefaultClock::default().now())
        })
    }

    /// Ok while within the heartbeat budget; the status that ends the session once over it.
    pub fn spend_heartbeat(&self, agent: &String) -> Result<(), Status> {
        self.heartbeats.check_key(agent).map_err(|_| {
            Status::resource_exhausted(
                "too many heartbeats from this agent; reconnect with backoff and send them at \
                 the interval given in Welcome",
            )
        })
    }

    /// Ok while within the budget for new sessions.
    pub fn spend_hello(&self, agent: &String) -> Result<(), Status> {
        if self.hellos_seen.fetch_add(1, Ordering::Relaxed) % FORGET_EVERY == FORGET_EVERY - 1 {
            self.forget_quiet_agents();
        }
        self.hellos.check_key(agent).map_err(|_| {
            Status::resource_exhausted(format!(
                "this agent opened more than {HELLO_BURST} sessions in a short time; reconnect \
                 with backoff (at most one session per {} s sustained)",
                HELLO_PERIOD.as_secs()
            ))
        })
    }

    /// Drops buckets that have refilled (their agents went quiet): they hold nothing.
    fn forget_quiet_agents(&self) {
        for limiter in [&self.reports, &self.heartbeats, &self.hellos] {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.reports.len() + self.heartbeats.len() + self.hellos.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_are_per_agent_and_survive_a_new_session() {
        let budgets = AgentBudgets::new(Duration::from_secs(10));
        let (a, b) = ("a".to_string(), "b".to_string());
        let now = (0..10_000)
            .take_while(|_| budgets.report_wait(&a).is_none())
            .count();
        assert_eq!(now, REPORT_BURST as usize);
        let wait = budgets.report_wait(&a).expect("the next report waits");
        assert!(wait <= REPORT_PERIOD, "{wait:?}");
        // Another agent is not slowed by the first.
        assert!(budgets.report_wait(&b).is_none());
        let heartbeats = (0..10_000)
            .take_while(|_| budgets.spend_heartbeat(&a).is_ok())
            .count();
        assert_eq!(
            heartbeats, HEARTBEAT_BURST as usize,
            "reports are not heartbeats"
        );
        let refused = budgets.spend_heartbeat(&a).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        // A reconnect loop runs out of hellos; the budget is the agent's, not the session's.
        let hellos = (0..10_000)
            .take_while(|_| budgets.spend_hello(&a).is_ok())
            .count();
        assert_eq!(hellos, HELLO_BURST as usize);
        assert!(budgets.spend_hello(&b).is_ok());
        assert!(
            budgets.report_wait(&a).is_some(),
            "still waiting after reconnects"
        );
    }

    #[test]
    fn quiet_agents_are_forgotten() {
        let budgets = AgentBudgets::new(Duration::from_millis(1));
        for i in 0..100 {
            budgets.spend_hello(&format!("agent-{i}")).unwrap();
        }
        assert!(budgets.tracked() >= 100);
        // Buckets refill: a 6 s hello period is too slow for a test, so check the heartbeat
        // buckets (1 ms interval) directly after one spend each.
        for i in 0..100 {
            budgets.spend_heartbeat(&format!("agent-{i}")).unwrap();
        }
        // Polled with a deadline: the buckets refill within a few milliseconds.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            budgets.heartbeats.retain_recent();
            if budgets.heartbeats.is_empty() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "refilled buckets are dropped"
            );
            std::thread::yield_now();
        }
    }
}
