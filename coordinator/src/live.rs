//! What the dashboard's live stream (`GET /api/v1/stream`) carries, computed once for every
//! browser: one supervised task reads the fleet summary, the active rollouts and the new
//! events once per tick and publishes them (a `watch` per snapshot, a `broadcast` for
//! events); each stream only forwards. So a hundred open dashboards cost one summary query
//! per second, not a hundred. Also the version sampler behind the timeline.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use drover_api as api;
use drover_proto::v1 as pb;
use tokio::sync::{Semaphore, broadcast, watch};
use tokio_util::sync::CancellationToken;

use crate::{
    domain::now_ms,
    fleet::Fleet,
    grpc::AdminApi,
    supervisor::{Policy, Supervisor},
};

/// Most live streams open at once; past it a browser is told to close a tab.
pub const MAX_STREAMS: usize = 100;
/// Events kept for a slow stream before it skips ahead.
const EVENT_BACKLOG: usize = 256;
/// Samples older than this are deleted by the sampler itself (the timeline reads ≤ 720 h).
const SAMPLE_MAX_AGE_MS: i64 = 31 * 24 * 3600 * 1000;

/// The shared feed: receivers to clone per stream, and the bound on streams.
#[derive(Clone)]
pub struct LiveFeed {
    /// For streams to re-check their token: a revoked one ends its stream.
    pub fleet: Arc<Fleet>,
    pub summary: watch::Receiver<Option<Arc<str>>>,
    pub rollouts: watch::Receiver<Option<Arc<str>>>,
    /// Channel → group → reason code → agents, for the active rollouts' channels.
    pub reasons: watch::Receiver<Option<Arc<str>>>,
    pub events: broadcast::Sender<Arc<str>>,
    pub streams: Arc<Semaphore>,
}

struct Publish {
    summary: watch::Sender<Option<Arc<str>>>,
    rollouts: watch::Sender<Option<Arc<str>>>,
    reasons: watch::Sender<Option<Arc<str>>>,
    events: broadcast::Sender<Arc<str>>,
}

/// Starts the snapshot task (every `tick`) and the version sampler (every `sample_every`),
/// both restarted by the supervisor if they fail.
pub fn start(
    fleet: &Arc<Fleet>,
    supervisor: &Supervisor,
    tick: Duration,
    sample_every: Duration,
) -> LiveFeed {
    let (summary_tx, summary) = watch::channel(None);
    let (rollouts_tx, rollouts) = watch::channel(None);
    let (reasons_tx, reasons) = watch::channel(None);
    let (events, _) = broadcast::channel(EVENT_BACKLOG);
    let publish = Arc::new(Publish {
        summary: summary_tx,
        rollouts: rollouts_tx,
        reasons: reasons_tx,
        events: events.clone(),
    });
    let admin = Arc::new(AdminApi::new(fleet.clone()));
    let streams = Arc::new(Semaphore::new(MAX_STREAMS));
    let open = streams.clone();
    supervisor.spawn("live-snapshot", Policy::Restart, move |shutdown| {
        snapshot_loop(admin.clone(), publish.clone(), open.clone(), tick, shutdown)
    });
    let f = fleet.clone();
    supervisor.spawn("version-sampler", Policy::Restart, move |shutdown| {
        sample_loop(f.clone(), sample_every, shutdown)
    });
    LiveFeed {
        fleet: fleet.clone(),
        summary,
        rollouts,
        reasons,
        events,
        streams,
    }
}

fn json<T: serde::Serialize>(value: &T) -> Option<Arc<str>> {
    serde_json::to_string(value).ok().map(Arc::from)
}

/// Replaces the value only when it changed, so streams send nothing for a quiet fleet.
fn publish_if_changed(tx: &watch::Sender<Option<Arc<str>>>, next: Option<Arc<str>>) {
    tx.send_if_modified(|current| {
        if next.is_some() && *current != next {
            *current = next;
            true
        } else {
            false
        }
    });
}

async fn snapshot_loop(
    admin: Arc<AdminApi>,
    publish: Arc<Publish>,
    streams: Arc<Semaphore>,
    tick: Duration,
    shutdown: CancellationToken,
) {
    let mut timer = tokio::time::interval(tick);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Events before the task started are history, not news: start after the newest.
    let mut last_event = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = timer.tick() => {}
        }
        // Nobody watching: only the event cursor moves, so no old event is news later.
        if streams.available_permits() < MAX_STREAMS {
            snapshots(&admin, &publish).await;
        }
        let request = pb::ListEventsRequest {
            limit: EVENT_BACKLOG as u32,
            agent_id: String::new(),
        };
        match admin.events(request).await {
            Ok(list) => {
                let newest = list.events.iter().map(|e| e.event_id).max();
                if let Some(last) = last_event {
                    // Oldest first, so a browser's feed reads in order.
                    for event in list.events.iter().rev().filter(|e| e.event_id > last) {
                        if let Some(text) = json(&api::Event::from(event)) {
                            // No receivers is fine: nobody is watching.
                            let _ = publish.events.send(text);
                        }
                    }
                }
                last_event = newest.max(last_event).or(Some(0));
            }
            Err(err) => tracing::warn!(error = %err, "live events failed; retrying next tick"),
        }
    }
}

/// The summary, the active rollouts and their agents by reason, published when changed.
async fn snapshots(admin: &AdminApi, publish: &Publish) {
    match admin.fleet_summary().await {
        Ok(summary) => {
            publish_if_changed(&publish.summary, json(&api::FleetSummary::from(&summary)))
        }
        Err(err) => tracing::warn!(error = %err, "live summary failed; retrying next tick"),
    }
    match admin.rollouts(pb::ListRolloutsRequest::default()).await {
        Ok(list) => {
            let rollouts: Vec<_> = list.rollouts.iter().map(api::Rollout::from).collect();
            publish_if_changed(&publish.rollouts, json(&rollouts));
            let reasons: BTreeMap<_, _> = rollouts
                .iter()
                .map(|r| (r.channel.clone(), admin.fleet().reason_counts(&r.channel)))
                .collect();
            publish_if_changed(&publish.reasons, json(&reasons));
        }
        Err(err) => tracing::warn!(error = %err, "live rollouts failed; retrying next tick"),
    }
}

/// One sample of agents by version per period, from the in-memory inventory (no store
/// read); the same statement set deletes samples past the timeline's reach.
async fn sample_loop(fleet: Arc<Fleet>, every: Duration, shutdown: CancellationToken) {
    let mut timer = tokio::time::interval(every);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = timer.tick() => {}
        }
        let counts = fleet.version_counts();
        let now = now_ms();
        if let Err(err) = fleet
            .store()
            .record_version_sample(now, &counts, now - SAMPLE_MAX_AGE_MS)
            .await
        {
            tracing::warn!(error = %err, "version sample not written; the next one will be");
        }
    }
}
