//! Several replicas on one PostgreSQL: the reconciler's lease (one holder at a time, with a
//! fencing token), which replicas are alive, and the agent facts that changed since a
//! replica last looked. Times come from the database's clock, so replicas whose clocks
//! disagree still agree on who holds the lease. SQLite serves one replica: it never calls
//! these (`Store::shared` says which).

use std::collections::{BTreeMap, HashSet};

use sqlx::{Connection, Postgres, pool::PoolConnection};

use super::{ACQUIRE_TIMEOUT, Backend, Store, connection::connection};
use crate::{
    domain::{Health, UpdateReport},
    error::{DroverError, Result},
};

/// The database's clock in Unix milliseconds (PostgreSQL).
macro_rules! db_now_ms {
    () => {
        "(extract(epoch FROM clock_timestamp()) * 1000)::bigint"
    };
}

/// The lease a reconciler holds: only a commit made under the current token is accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub holder: String,
    pub token: i64,
}

/// The only lease name: one reconciler for the whole fleet.
pub const RECONCILER: &str = "reconciler";

/// One agent's facts as the rollout engine reads them, from another replica's writes.
#[derive(Debug, Clone)]
pub struct ChangedAgent {
    pub agent_id: String,
    pub group: String,
    pub channel: String,
    pub version: Option<String>,
    pub health: Health,
    pub last_report: Option<UpdateReport>,
    /// The replica holding its session, if any.
    pub connected_on: Option<String>,
    pub changed_ms: i64,
    pub first_seen_ms: i64,
    /// Its labels with its installer kind under `installer`: what strata are made of.
    pub traits: BTreeMap<String, String>,
    /// The stop epoch its updater acknowledged last, and of which rollout.
    pub ack: Option<(String, u64)>,
}

type ChangedTuple = (
    String,
    String,
    String,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
    i64,
    i64,
    String,
    String,
    Option<String>,
    i64,
);

/// How many changed agents one read returns at most; the rest come on the next read.
pub const CHANGED_PAGE: usize = 20_000;

impl Store {
    /// Whether this store is shared by several replicas (PostgreSQL): then a lease decides
    /// who reconciles and replicas read each other's agent facts.
    pub fn shared(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    async fn shared_connection(&self) -> Result<PoolConnection<Postgres>> {
        match &self.backend {
            Backend::Postgres(pool) => Ok(connection(pool, ACQUIRE_TIMEOUT).await?),
            Backend::Sqlite(_) => Err(DroverError::Internal(
                "a replica lease was asked of SQLite, which serves one replica".into(),
            )),
        }
    }

    /// Takes or renews the lease for `ttl_ms`: returns the token while `holder` holds it,
    /// `None` while someone else's lease is unexpired. A new holder's token is one more
    /// than the last, so commits made under an older token are refused.
    pub async fn acquire_lease(&self, holder: &str, ttl_ms: i64) -> Result<Option<i64>> {
        let mut conn = self.shared_connection().await?;
        let token: Option<(i64,)> = sqlx::query_as(concat!(
            "INSERT INTO reconciler_lease (name, holder, token, expires_ms) VALUES ($1, $2, 1, ",
            db_now_ms!(),
            " + $3) ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
             token = CASE WHEN reconciler_lease.holder = excluded.holder \
             THEN reconciler_lease.token ELSE reconciler_lease.token + 1 END, \
             expires_ms = excluded.expires_ms \
             WHERE reconciler_lease.holder = excluded.holder OR reconciler_lease.expires_ms < ",
            db_now_ms!(),
            " RETURNING token"
        ))
        .bind(RECONCILER)
        .bind(holder)
        .bind(ttl_ms)
        .fetch_optional(&mut *conn)
        .await?;
        self.count_writes(1);
        Ok(token.map(|(token,)| token))
    }

    /// Gives the lease up at once (a clean shutdown), so another replica need not wait.
    pub async fn release_lease(&self, holder: &str) -> Result<()> {
        let mut conn = self.shared_connection().await?;
        sqlx::query(concat!(
            "UPDATE reconciler_lease SET expires_ms = ",
            db_now_ms!(),
            " - 1 WHERE name = $1 AND holder = $2"
        ))
        .bind(RECONCILER)
        .bind(holder)
        .execute(&mut *conn)
        .await?;
        self.count_writes(1);
        Ok(())
    }

    /// Says this replica is alive; forgets replicas silent for an hour.
    pub async fn replica_alive(&self, replica: &str) -> Result<()> {
        let mut conn = self.shared_connection().await?;
        let mut tx = conn.begin().await?;
        sqlx::query(concat!(
            "INSERT INTO replicas (replica_id, seen_ms) VALUES ($1, ",
            db_now_ms!(),
            ") ON CONFLICT (replica_id) DO UPDATE SET seen_ms = excluded.seen_ms"
        ))
        .bind(replica)
        .execute(&mut *tx)
        .await?;
        sqlx::query(concat!(
            "DELETE FROM replicas WHERE seen_ms < ",
            db_now_ms!(),
            " - 3600000"
        ))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.count_writes(2);
        Ok(())
    }

    /// Replicas heard from within `within_ms`.
    pub async fn live_replicas(&self, within_ms: i64) -> Result<HashSet<String>> {
        let mut conn = self.shared_connection().await?;
        let rows: Vec<(String,)> = sqlx::query_as(concat!(
            "SELECT replica_id FROM replicas WHERE seen_ms >= ",
            db_now_ms!(),
            " - $1"
        ))
        .bind(within_ms)
        .fetch_all(&mut *conn)
        .await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    /// Agents whose engine facts changed at or after `since_ms` (database clock), oldest
    /// first, at most a page; `since_ms = 0` reads them all, a page at a time.
    pub async fn agents_changed_since(&self, since_ms: i64) -> Result<Vec<ChangedAgent>> {
        let mut conn = self.shared_connection().await?;
        let rows: Vec<ChangedTuple> = sqlx::query_as(
            "SELECT agent_id, group_name, channel, agent_version, health, last_report_json, \
             connected_on, changed_ms, first_seen_ms, installer, labels_json, ack_rollout_id, ack_epoch FROM agents WHERE changed_ms >= $1 \
             ORDER BY changed_ms, agent_id LIMIT $2",
        )
        .bind(since_ms)
        .bind(CHANGED_PAGE as i64)
        .fetch_all(&mut *conn)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(
                    agent_id,
                    group,
                    channel,
                    version,
                    health,
                    report,
                    connected_on,
                    changed_ms,
                    first_seen_ms,
                    installer,
                    labels_json,
                    ack_rollout_id,
                    ack_epoch,
                )| {
                    ChangedAgent {
                        agent_id,
                        group,
                        channel,
                        version,
                        health: Health::parse(&health).unwrap_or_default(),
                        last_report: report.and_then(|json| serde_json::from_str(&json).ok()),
                        connected_on,
                        changed_ms,
                        first_seen_ms,
                        traits: crate::domain::agent_traits(
                            serde_json::from_str(&labels_json).unwrap_or_default(),
                            &installer,
                        ),
                        ack: ack_rollout_id.map(|id| (id, u64::try_from(ack_epoch).unwrap_or(0))),
                    }
                },
            )
            .collect())
    }
}

/// Inside a reconciler's transaction (PostgreSQL): holds the lease row with a shared lock,
/// so no one can take the lease until this commits, and finds it only while the fence's
/// token is the current, unexpired one.
pub(super) const FENCE_CHECK: &str = concat!(
    "SELECT token FROM reconciler_lease WHERE name = $1 AND holder = $2 AND token = $3 \
     AND expires_ms > ",
    db_now_ms!(),
    " FOR SHARE"
);
