//! Replicas on one PostgreSQL hear each other's changes. After a change that affects
//! directives commits, the replica that made it announces what changed (`Store::announce`:
//! `pg_notify`, a small payload; the state itself is read from the tables). Every replica
//! listens (a supervised task), re-reads that part and pushes to its own updaters at once,
//! instead of waiting for the periodic refresh. A listener that lost its connection cannot
//! know what it missed, so it resynchronises everything from the tables before it trusts
//! the feed again. SQLite serves one replica: nothing is announced or heard.
//!
//! Rollouts are on the feed too: one replica moves them (`replicas.rs`), and the others
//! reload a rollout's committed state when they hear it changed.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::Fleet;
use crate::{
    error::Result,
    store::feed::{ChangeListener, Heard},
};

/// What changed; each replica re-reads only that.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Channels, the control plane, schedules.
    Settings,
    Pins,
    /// Admin credentials.
    Credentials,
    /// An agent's identity was revoked: cut its session wherever it is.
    Revoked(String),
    /// A rollout was created, moved by the reconciler or steered by an admin.
    Rollouts,
}

impl Change {
    fn encode(&self) -> String {
        match self {
            Self::Settings => "settings".into(),
            Self::Pins => "pins".into(),
            Self::Credentials => "credentials".into(),
            Self::Rollouts => "rollouts".into(),
            Self::Revoked(agent) => format!("revoked {agent}"),
        }
    }

    fn decode(text: &str) -> Option<Self> {
        Some(match text.split_once(' ') {
            Some(("revoked", agent)) if !agent.is_empty() => Self::Revoked(agent.to_string()),
            Some(_) => return None,
            None => match text {
                "settings" => Self::Settings,
                "pins" => Self::Pins,
                "credentials" => Self::Credentials,
                "rollouts" => Self::Rollouts,
                _ => return None,
            },
        })
    }
}

/// `REPLICA CHANGE`: the announcing replica's id, so it can skip its own.
fn payload(replica: &str, change: &Change) -> String {
    format!("{replica} {}", change.encode())
}

fn parse(payload: &str) -> Option<(&str, Change)> {
    let (replica, change) = payload.split_once(' ')?;
    Some((replica, Change::decode(change)?))
}

impl Fleet {
    /// Tells the other replicas about a committed change. Best effort: the change is
    /// committed either way, and a replica that misses this catches up at its periodic
    /// refresh or its next resynchronisation.
    pub(super) async fn announce(&self, change: Change) {
        let text = payload(&self.replica_id, &change);
        if let Err(err) = self.store().announce(&text).await {
            tracing::warn!(error = %err, ?change, "change committed; announcing it to other replicas failed");
        }
    }

    async fn apply(&self, change: Change) -> Result<()> {
        match change {
            Change::Settings => {
                self.refresh_settings().await?;
            }
            Change::Credentials => self.reload_credentials().await?,
            Change::Pins => {
                *self.pins.write() = self.store().pinned_agents().await?;
            }
            Change::Revoked(agent) => {
                self.enrolment_revoked(&agent);
            }
            // Reloads, decides again and pushes.
            Change::Rollouts => return self.reload_rollouts().await,
        }
        self.push_all();
        Ok(())
    }

    /// Re-reads everything a replica keeps in memory from the tables.
    pub async fn resync(&self) -> Result<()> {
        self.reload_credentials().await?;
        *self.pins.write() = self.store().pinned_agents().await?;
        self.reload_rollouts().await
    }
}

/// The listener task: applies what other replicas announce; resynchronises after a gap.
/// A lost or failed listener (the database restarted, its connection was terminated, a
/// read failed) is not the task's failure: it logs, waits a moment, listens again and
/// resynchronises, while the periodic re-read keeps serving meanwhile.
pub async fn run(fleet: Arc<Fleet>, shutdown: CancellationToken) -> Result<()> {
    loop {
        match listen(&fleet, &shutdown).await {
            Ok(()) => return Ok(()),
            Err(err) => tracing::warn!(
                error = %err,
                "the change feed's listener failed; listening again and resynchronising"
            ),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(RELISTEN_AFTER) => {}
        }
    }
}

const RELISTEN_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// Listens until shutdown (Ok) or until the listener fails (Err).
async fn listen(fleet: &Fleet, shutdown: &CancellationToken) -> Result<()> {
    let Some(mut listener) = fleet.store().listen().await? else {
        shutdown.cancelled().await;
        return Ok(());
    };
    // Changes made before the subscription (at start-up, or while it was lost).
    fleet.resync().await?;
    tracing::info!("listening for other replicas' changes");
    loop {
        let heard = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            heard = next(&mut listener) => heard?,
        };
        match heard {
            Heard::Change(text) => match parse(&text) {
                Some((replica, _)) if replica == &*fleet.replica_id => {}
                Some((_, change)) => {
                    tracing::debug!(?change, "another replica's change");
                    fleet.apply(change).await?;
                }
                None => tracing::warn!(payload = %text, "unknown change announced; ignored"),
            },
            Heard::Gap => {
                tracing::warn!(
                    "lost the change feed's connection; resynchronising from the tables"
                );
                fleet.resync().await?;
            }
        }
    }
}

async fn next(listener: &mut ChangeListener) -> Result<Heard> {
    listener.next().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_and_unknown_ones_are_refused() {
        for change in [
            Change::Settings,
            Change::Pins,
            Change::Credentials,
            Change::Revoked("web-01".into()),
            Change::Rollouts,
        ] {
            let text = payload("r1", &change);
            assert_eq!(parse(&text), Some(("r1", change)));
        }
        assert_eq!(parse("r1 nonsense"), None);
        assert_eq!(parse("r1 revoked "), None);
        assert_eq!(parse("justone"), None);
    }
}
