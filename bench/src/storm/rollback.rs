//! The storm's rollback phase: a rollout moves every updater but one (a straggler that
//! keeps it from finishing) from the channel's version to the next, then is rolled back at
//! once. Measured: each report's lag (the updater finished
//! → the coordinator acknowledged it durable) and when the API shows 99% and 100% of the
//! fleet back on the version rolled back to.

use std::time::{Duration, Instant};

use drover_proto::v1 as pb;
use drover_tests::{admin_request, droverctl};
use serde_json::json;

use super::{
    lag_percentiles, text_percentiles,
    updater::{Fleet, Phase},
    wait_acks,
};
use crate::{ms, sampler::Admin};

/// The version rolled back to: the channel's, before the rollout.
const FROM: &str = "1.2.0";

pub struct RollbackNumbers {
    moved: Duration,
    call: Duration,
    acked: (Duration, Duration, Duration),
    lags: Vec<Duration>,
    api_99: Option<Duration>,
    api_all: Option<Duration>,
}

impl RollbackNumbers {
    pub fn text(&self, n: usize) -> String {
        let (p50, p99, all) = self.acked;
        let api =
            |d: Option<Duration>| d.map_or("never (120 s)".into(), |d| format!("{:.0} ms", ms(d)));
        format!(
            "rollback (after a rollout moved {} of {n} in {:.1} s): call {:.0} ms; reports \
             acknowledged 50% {:.0} ms, 99% {:.0} ms, 100% {:.0} ms after it; report lag \
             (finished → acknowledged) {}; API shows 99% back after {}, 100% after {}",
            n - 1,
            self.moved.as_secs_f64(),
            ms(self.call),
            ms(p50),
            ms(p99),
            ms(all),
            text_percentiles(&self.lags),
            api(self.api_99),
            api(self.api_all),
        )
    }

    pub fn json(&self) -> serde_json::Value {
        let (p50, p99, all) = self.acked;
        json!({
            "rollout_moved_all_s": self.moved.as_secs_f64(),
            "call_ms": ms(self.call),
            "p50_acked_ms": ms(p50), "p99_acked_ms": ms(p99), "all_acked_ms": ms(all),
            "report_lag_ms": lag_percentiles(self.lags.clone()),
            "api_99_back_ms": self.api_99.map(ms),
            "api_all_back_ms": self.api_all.map(ms),
        })
    }
}

pub async fn measure(
    fleet: &Fleet,
    admin: &mut Admin,
    url: &str,
    n: usize,
) -> anyhow::Result<RollbackNumbers> {
    fleet.follow(Phase::Rollout);
    let started = Instant::now();
    // Time-based with no waits: every group starts at once. One updater never installs it
    // (the straggler), so with a 100% done threshold the rollout is still active when
    // everyone else has moved.
    let create = "rollout create --channel bench --from 1.2.0 --to 1.3.0 --strategy time-based \
                  --group dev --group staging --group prod --immediate --done-threshold 100";
    let create: Vec<&str> = create.split_whitespace().collect();
    let (ok, _, err) = droverctl(url, &create).await;
    anyhow::ensure!(ok, "rollout create failed: {err}");
    // Every updater but the straggler.
    let moving = n - 1;
    let (_, _, moved) = wait_acks(fleet.acked(Phase::Rollout), moving, started).await;
    let on_target = fleet
        .acked(Phase::Rollout)
        .iter()
        .filter(|a| a.get().is_some());
    anyhow::ensure!(
        on_target.count() == moving,
        "the rollout did not move every updater but one within 120 s"
    );

    fleet.follow(Phase::Rollback);
    let watcher = tokio::spawn(watch_back(admin.clone(), url.to_string(), n));
    let asked = Instant::now();
    let request = pb::RollbackRequest {
        channel: "bench".into(),
        ..Default::default()
    };
    admin.rollback(admin_request(url, request)).await?;
    let call = asked.elapsed();
    let acked = wait_acks(fleet.acked(Phase::Rollback), moving, asked).await;
    let (api_99, api_all) = watcher.await?;
    Ok(RollbackNumbers {
        moved,
        call,
        acked,
        lags: fleet.report_lags(Phase::Rollback),
        api_99: api_99.map(|t| t - asked),
        api_all: api_all.map(|t| t - asked),
    })
}

/// Polls the fleet summary every 100 ms until every agent is listed on `FROM` (or 120 s):
/// when 99% were, and when all were.
async fn watch_back(mut admin: Admin, url: String, n: usize) -> (Option<Instant>, Option<Instant>) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let (mut at_99, mut at_all) = (None, None);
    while at_all.is_none() && Instant::now() < deadline {
        let summary = admin
            .get_fleet_summary(admin_request(&url, pb::GetFleetSummaryRequest {}))
            .await;
        let back: u64 = summary.map_or(0, |s| {
            s.into_inner()
                .rows
                .iter()
                .filter(|r| r.agent_version == FROM)
                .map(|r| r.count)
                .sum()
        });
        let now = Instant::now();
        if back * 100 >= n as u64 * 99 {
            at_99.get_or_insert(now);
        }
        if back >= n as u64 {
            at_all = Some(now);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (at_99, at_all)
}
