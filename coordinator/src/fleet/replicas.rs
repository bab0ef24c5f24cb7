//! Several replicas on one PostgreSQL. Every replica serves its own updaters and computes
//! their directives, but only one, the holder of the reconciler lease, moves rollouts:
//! it commits transitions under the lease's fencing token, so a leader that stalled past
//! its lease (paused, partitioned) cannot write. The others compute decisions from the
//! committed state only (`rollout::decisions`, no transition) and reload it when the
//! change feed says a rollout changed.
//!
//! Each replica's engine sees the whole fleet: before a pass it merges the agent facts
//! other replicas wrote since it last looked (`agents.changed_ms`, set by a trigger), and
//! counts an agent connected elsewhere only while the replica holding it is alive.
//!
//! SQLite serves one replica: it is always the reconciler, and none of this runs.

use std::{collections::HashSet, sync::Arc, time::Duration};

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use super::Fleet;
use crate::{error::Result, store::Fence};

/// What this replica may do to rollouts now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Role {
    /// The only replica (SQLite): it reconciles, unfenced.
    Sole,
    /// It holds the lease: it reconciles, each commit checked against the fence.
    Leader(Fence),
    /// Another replica reconciles; this one only decides for its own updaters.
    Follower,
}

/// How often a full read of the agents' facts replaces the incremental ones (a write whose
/// transaction took longer than the overlap below would otherwise stay unseen).
const FULL_READ_EVERY: Duration = Duration::from_secs(60);
/// Each incremental read starts this far before the newest change seen, so changes
/// committed a little out of order (a slow transaction) are still read.
const OVERLAP_MS: i64 = 10_000;

/// The lease's timing: held for `ttl`, renewed every `ttl / 3`.
#[derive(Debug, Clone, Copy)]
pub struct LeaseConfig {
    pub ttl: Duration,
}

impl LeaseConfig {
    pub fn renew_every(&self) -> Duration {
        self.ttl / 3
    }

    /// A replica silent for this long is taken as gone: its agents count as disconnected.
    fn replica_silence_ms(&self) -> i64 {
        self.ttl.as_millis() as i64
    }
}

impl Default for LeaseConfig {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(10),
        }
    }
}

#[derive(Default)]
pub(super) struct Replication {
    fence: Mutex<Option<Fence>>,
    facts: Mutex<FactsCursor>,
}

#[derive(Default)]
struct FactsCursor {
    /// The newest change read so far (database clock); `None`: read everything next.
    newest_ms: Option<i64>,
    last_full: Option<std::time::Instant>,
    live_replicas: HashSet<String>,
}

impl Fleet {
    pub(super) fn role(&self) -> Role {
        if !self.store().shared() {
            return Role::Sole;
        }
        match self.replication.fence.lock().clone() {
            Some(fence) => Role::Leader(fence),
            None => Role::Follower,
        }
    }

    /// Whether an agent whose session another replica holds counts as connected: only
    /// while that replica is alive (a killed replica's agents reconnect elsewhere).
    pub(super) fn connected_elsewhere(&self, connected_on: Option<&str>) -> bool {
        connected_on.is_some_and(|replica| {
            replica != &*self.replica_id
                && self
                    .replication
                    .facts
                    .lock()
                    .live_replicas
                    .contains(replica)
        })
    }

    /// Merges what other replicas wrote about agents since the last look (several
    /// replicas): before a pass over active rollouts, and before a rollout is created.
    pub(super) async fn merge_shared_facts(&self) -> Result<()> {
        if !self.store().shared() {
            return Ok(());
        }
        let newest_before = {
            let mut cursor = self.replication.facts.lock();
            let stale = cursor
                .last_full
                .is_none_or(|at| at.elapsed() >= FULL_READ_EVERY);
            if stale {
                cursor.newest_ms = None;
            }
            cursor.newest_ms
        };
        let live = self
            .store()
            .live_replicas(self.config.lease.replica_silence_ms())
            .await?;
        let mut from = newest_before.map_or(0, |newest| newest - OVERLAP_MS);
        let mut newest = newest_before.unwrap_or(0);
        loop {
            let rows = self.store().agents_changed_since(from).await?;
            let full_page = rows.len() >= crate::store::CHANGED_PAGE;
            let last = rows.last().map_or(from, |row| row.changed_ms);
            newest = newest.max(last);
            self.inventory
                .merge_remote(rows, |agent| self.sessions.get(agent).is_some());
            // A page that ends where it began (more than a page changed in one millisecond)
            // cannot advance; the next full read covers the rest.
            if !full_page || last == from {
                break;
            }
            from = last;
        }
        let mut cursor = self.replication.facts.lock();
        if newest_before.is_none() {
            cursor.last_full = Some(std::time::Instant::now());
        }
        cursor.newest_ms = Some(newest);
        cursor.live_replicas = live;
        Ok(())
    }

    /// Re-reads the rollouts from the store (another replica changed one), then decides
    /// again for this replica's updaters and pushes.
    pub(super) async fn reload_rollouts(&self) -> Result<()> {
        self.load_shared_rollouts().await?;
        self.reconcile_rollouts().await?;
        self.push_all();
        Ok(())
    }

    async fn load_shared_rollouts(&self) -> Result<()> {
        // Settings first: a rollout that finished switched its channel in the same commit,
        // and the channel must serve the new version before the rollout stops governing it.
        self.refresh_settings().await?;
        let _serialized = self.rollout_lock.lock().await;
        self.load_rollouts().await
    }

    /// The safety net behind the feed (an announcement can be lost: the announcing replica
    /// died right after its commit): reloads when the store's active rollouts or their
    /// revisions differ from this replica's.
    pub(super) async fn check_rollouts_current(&self) -> Result<()> {
        if !self.store().shared() {
            return Ok(());
        }
        let mut stored: Vec<(String, i64)> = self
            .store()
            .active_rollouts()
            .await?
            .into_iter()
            .map(|row| (row.rollout_id, row.revision))
            .collect();
        let mut held: Vec<(String, i64)> = self
            .rollouts()
            .iter()
            .map(|r| (r.spec.rollout_id.clone(), r.revision))
            .collect();
        stored.sort();
        held.sort();
        if stored != held {
            tracing::info!("rollouts changed in the store unannounced; reloading them");
            self.reload_rollouts().await?;
        }
        Ok(())
    }

    /// One lease round: say this replica is alive, take or renew the lease, and act on a
    /// change of role.
    async fn lease_round(&self) {
        if let Err(err) = self.store().replica_alive(&self.replica_id).await {
            tracing::warn!(error = %err, "could not record this replica as alive");
        }
        let ttl_ms = self.config.lease.ttl.as_millis() as i64;
        let token = match self.store().acquire_lease(&self.replica_id, ttl_ms).await {
            Ok(token) => token,
            Err(err) => {
                // Whether the lease is still ours is unknown: act as a follower. The fence
                // refuses our commits anyway once someone else takes it.
                tracing::warn!(error = %err, "could not renew the reconciler lease");
                None
            }
        };
        let fence = token.map(|token| Fence {
            holder: self.replica_id.to_string(),
            token,
        });
        let before = std::mem::replace(&mut *self.replication.fence.lock(), fence.clone());
        self.metrics().reconciler_leader(fence.is_some());
        match (before.is_some(), fence) {
            (false, Some(fence)) => {
                tracing::info!(
                    token = fence.token,
                    "this replica now runs the rollout engine (it holds the reconciler lease)"
                );
                // Work from what the store holds, not from what this replica last heard;
                // the pass itself runs in the reconcile loop, so renewals are never late.
                if let Err(err) = self.load_shared_rollouts().await {
                    tracing::warn!(error = %err, "could not reload rollouts on taking the lease");
                }
                self.reconcile_now.notify_one();
            }
            (true, None) => {
                tracing::warn!(
                    "this replica no longer holds the reconciler lease; another replica runs the rollout engine"
                );
            }
            _ => {}
        }
    }
}

/// The lease task (several replicas): renews every third of the lease; gives the lease up
/// on shutdown so another replica takes over at once.
pub async fn run_lease(fleet: Arc<Fleet>, shutdown: CancellationToken) {
    if !fleet.store().shared() {
        fleet.metrics().reconciler_leader(true);
        shutdown.cancelled().await;
        return;
    }
    let mut renew = tokio::time::interval(fleet.config.lease.renew_every());
    renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = renew.tick() => fleet.lease_round().await,
        }
    }
    let held = fleet.replication.fence.lock().take().is_some();
    if held && let Err(err) = fleet.store().release_lease(&fleet.replica_id).await {
        tracing::warn!(error = %err, "could not give up the reconciler lease; it expires on its own");
    }
}
