//! The store: the source of truth. One type, two backends (SQLite embedded default,
//! PostgreSQL for several replicas), the same SQL text for both wherever the dialects agree
//! (`$N` placeholders work in both).
//!
//! Every method either commits fully or changes nothing. Write statements are counted so
//! benchmarks and `/metrics` can show database writes per heartbeat.

mod agents;
mod answered;
pub(crate) mod audit;
mod batch;
mod channels;
mod connection;
mod credentials;
mod enrolment;
mod error;
pub mod feed;
mod history;
mod lease;
mod ops;
mod releases;
mod rollouts;
mod samples;
mod schedules;
mod search;

use std::{
    str::FromStr,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use sqlx::{
    PgPool, SqlitePool,
    postgres::PgPoolOptions,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};

use crate::error::{DroverError, ErrorId, Result, StoreProblem};

pub use agents::ReportRecorded;
/// What kept callers waiting `waited` for the store: busy, unreachable, or a refusal.
pub(crate) use answered::pool_timeout_problem as waiting_problem;
pub use audit::{AuditEntry, AuditRecord};
pub use batch::{AgentWrite, AgentWriteOutcome};
pub use channels::ChannelRow;
pub use credentials::CredentialRow;
pub use enrolment::{EnrolRefusal, IdentityRow, JoinTokenRow};
pub use history::StoredReport;
pub use lease::{CHANGED_PAGE, ChangedAgent, Fence};
pub use ops::{PruneTable, Pruned};
pub use releases::StoredRelease;
use rollouts::insert_events;
pub use rollouts::{Event, NewEvent, RolloutCommit, RolloutRow};
pub use schedules::GroupSchedule;
pub use search::{AgentSearch, AgentSort};

enum Backend {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

pub struct Store {
    backend: Backend,
    write_statements: AtomicU64,
    /// SQLite has one writer at a time and its busy handler retries by sleeping, so under a
    /// stream of group commits an admin's write could sleep-retry for seconds. SQLite writes
    /// queue on this fair lock instead: each waits only for the writes ahead of it.
    /// PostgreSQL locks rows and needs none.
    write_gate: Option<tokio::sync::Mutex<()>>,
    /// Serializes the two writers of many agent rows at once (the group commit and the
    /// liveness flush) on both backends: on PostgreSQL they would otherwise lock rows in
    /// different orders and deadlock each other. Taken before `write_gate`.
    agent_rows: tokio::sync::Mutex<()>,
    /// Where store calls are timed (`/metrics`); unset in tools and store tests.
    metrics: std::sync::OnceLock<std::sync::Arc<crate::metrics::Metrics>>,
}

/// Runs `$body` with `$conn` bound to a pooled connection of either backend (`&mut` its
/// concrete connection type, got within `ACQUIRE_TIMEOUT`, see `connection.rs`); the body
/// is type-checked once per backend, so the same query code serves both.
macro_rules! on_connection {
    ($store:expr, $conn:ident => $body:expr) => {
        match &$store.backend {
            $crate::store::Backend::Sqlite(pool) => $crate::store::on_connection!(@held pool, $conn => $body),
            $crate::store::Backend::Postgres(pool) => $crate::store::on_connection!(@held pool, $conn => $body),
        }
    };
    (@held $pool:ident, $conn:ident => $body:expr) => {{
        #[allow(unused_imports)]
        use sqlx::Connection as _;
        let mut held =
            $crate::store::connection::connection($pool, $crate::store::ACQUIRE_TIMEOUT).await?;
        let $conn = &mut *held;
        $body
    }};
}
pub(crate) use on_connection;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

impl Store {
    /// Opens (creating if needed) and migrates the database named by `url`:
    /// `postgres://…`, `sqlite://PATH`, or a bare file path for SQLite.
    pub async fn open(url: &str) -> Result<Self> {
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres(open_postgres(url).await?)
        } else {
            Backend::Sqlite(open_sqlite(url).await?)
        };
        let write_gate = matches!(backend, Backend::Sqlite(_)).then(|| tokio::sync::Mutex::new(()));
        Ok(Self {
            backend,
            write_statements: AtomicU64::new(0),
            write_gate,
            agent_rows: tokio::sync::Mutex::new(()),
            metrics: std::sync::OnceLock::new(),
        })
    }

    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Write statements executed since start (inserts, updates; not reads).
    pub fn write_statements(&self) -> u64 {
        self.write_statements.load(Ordering::Relaxed)
    }

    /// Held by the writers of many agent rows at once (see `agent_rows`), then the gate.
    async fn agent_rows_gate(
        &self,
    ) -> (
        tokio::sync::MutexGuard<'_, ()>,
        Option<tokio::sync::MutexGuard<'_, ()>>,
    ) {
        let rows = self.agent_rows.lock().await;
        (rows, self.write_gate().await)
    }

    /// Held for the whole of every write transaction (see `write_gate`).
    async fn write_gate(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match &self.write_gate {
            Some(gate) => Some(gate.lock().await),
            None => None,
        }
    }

    /// Times the store's calls from now on (`drover_store_calls_seconds`).
    pub fn observe(&self, metrics: std::sync::Arc<crate::metrics::Metrics>) {
        let _ = self.metrics.set(metrics);
    }

    /// Runs one call of the fixed set `/metrics` times, recording its duration and failure.
    async fn timed<T>(
        &self,
        op: crate::metrics::StoreOp,
        call: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let started = std::time::Instant::now();
        let result = call.await;
        if let Some(metrics) = self.metrics.get() {
            metrics.store_call(op, started.elapsed(), result.is_ok());
        }
        result
    }

    fn count_writes(&self, statements: u64) {
        self.write_statements
            .fetch_add(statements, Ordering::Relaxed);
    }

    pub async fn close(&self) {
        match &self.backend {
            Backend::Sqlite(pool) => pool.close().await,
            Backend::Postgres(pool) => pool.close().await,
        }
    }

    pub async fn control_plane_version(&self) -> Result<Option<(String, i64)>> {
        let row: Option<(String, i64)> = on_connection!(self, conn => {
            sqlx::query_as("SELECT value, updated_at_ms FROM settings WHERE key = 'control_plane_version'")
                .fetch_optional(conn)
                .await?
        });
        Ok(row)
    }

    /// Sets the control-plane version; the event commits with it.
    pub async fn set_control_plane_version(
        &self,
        version: &str,
        now_ms: i64,
        event: &NewEvent,
    ) -> Result<()> {
        let _write = self.write_gate().await;
        on_connection!(self, conn => {
            let mut tx = conn.begin().await?;
            sqlx::query(
                "INSERT INTO settings (key, value, updated_at_ms) VALUES ('control_plane_version', $1, $2) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at_ms = excluded.updated_at_ms",
            )
            .bind(version)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
            insert_events!(tx, [event]);
            tx.commit().await?;
        });
        self.count_writes(2);
        Ok(())
    }
}

/// How long a call waits for a pooled connection before it fails with `Unavailable`:
/// during an outage every call fails within a second (this plus the round trip) instead of
/// queueing, and the pool reconnects by itself once the database is back. Opening a
/// connection may take longer and is not cancelled by the wait (`connection.rs`).
const ACQUIRE_TIMEOUT: Duration = Duration::from_millis(800);

/// SQLite: one writer at a time whatever the pool size (WAL), readers alongside it. Writers
/// take the write gate before a connection, so at most one connection writes (a group
/// commit of updaters' writes, an admin change, a flush); the other three serve the
/// dashboard, admin reads and the readiness probe while it does. More would sit idle.
const SQLITE_MAX_CONNECTIONS: u32 = 4;

/// PostgreSQL: per replica. The hot paths (heartbeats, target reads) never touch the store,
/// so the load is hellos, reports, admin verbs and batched flushes; ten connections keep a
/// two-core coordinator busy, and several replicas plus psql and migrations stay well under
/// the server's default `max_connections` (100).
const POSTGRES_MAX_CONNECTIONS: u32 = 10;

async fn open_sqlite(url: &str) -> Result<SqlitePool> {
    let path = url.strip_prefix("sqlite://").unwrap_or(url);
    let options = SqliteConnectOptions::from_str(&format!("sqlite://{path}"))
        .map_err(|err| DroverError::invalid(format!("bad SQLite location '{path}': {err}")))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // FULL: a change is on disk before the coordinator acknowledges it, even on power loss.
        .synchronous(SqliteSynchronous::Full)
        // Bounded like the pool: a write waits at most this long for another writer.
        .busy_timeout(ACQUIRE_TIMEOUT)
        .foreign_keys(true);
    let pool = SqlitePoolOptions::new()
        .max_connections(SQLITE_MAX_CONNECTIONS)
        .acquire_timeout(connection::CONNECT_TIMEOUT)
        .after_connect(|conn, _| {
            Box::pin(async move {
                if let Err(err) = refuse_read_only_connection(conn).await {
                    answered::connection_refused(error::problem_of(&err));
                    return Err(err);
                }
                answered::connected();
                Ok(())
            })
        })
        .before_acquire(|_, _| Box::pin(async { answered_ok() }))
        .after_release(|conn, _| Box::pin(async move { no_transaction_left(conn).await }))
        .connect_with(options)
        .await
        .map_err(|err| open_failed(&err, StoreProblem::CannotOpenSqlite))?;
    answered::store_is_local_file();
    SQLITE_MIGRATIONS
        .run(&pool)
        .await
        .map_err(migration_error)?;
    Ok(pool)
}

/// SQLite silently opens a file it may not write (file modes, `chattr +i`) read-only, and
/// such a connection would keep refusing writes after the file is writable again. Writing
/// the header's user version (unchanged) proves the connection can write; the pool discards
/// one that cannot and tries again on the next call.
async fn refuse_read_only_connection(conn: &mut sqlx::SqliteConnection) -> sqlx::Result<()> {
    use sqlx::Executor;
    let (version,): (i64,) = sqlx::query_as("PRAGMA user_version")
        .fetch_one(&mut *conn)
        .await?;
    let written = conn
        .execute(sqlx::AssertSqlSafe(format!(
            "PRAGMA user_version = {version}"
        )))
        .await;
    match written {
        // A full disk is not a read-only file: keep the connection, so calls fail with
        // "disk full" (what the operator must fix) rather than "unreachable".
        Err(sqlx::Error::Database(err)) if err.code().as_deref() == Some("13") => Ok(()),
        Err(err) => Err(err),
        Ok(_) => Ok(()),
    }
}

/// Whether a connection coming back to the pool holds no transaction, so it may be reused.
/// A COMMIT that fails on a full disk may leave one open (SQLite rolls some back by itself,
/// sqlx's rollback then fails and its count stays up): reused, that connection would keep
/// the write lock ("database is locked" for every other writer, long after the disk is
/// freed) and turn later transactions into savepoints of the stuck one, acknowledged but
/// never committed. Such a connection is closed instead.
async fn no_transaction_left(conn: &mut sqlx::SqliteConnection) -> sqlx::Result<bool> {
    use sqlx::Connection;
    if !conn.is_in_transaction() {
        return Ok(true);
    }
    // A transaction dropped without commit only queues its rollback; the ping runs after it.
    conn.ping().await?;
    let clean = !conn.is_in_transaction();
    if !clean {
        tracing::warn!("closing a store connection that still holds a transaction");
    }
    Ok(clean)
}

async fn open_postgres(url: &str) -> Result<PgPool> {
    // sqlx bounds each connection attempt by the pool's acquire deadline: at start-up an
    // unreachable server fails within `CONNECT_TIMEOUT`.
    let pool = PgPoolOptions::new()
        .max_connections(POSTGRES_MAX_CONNECTIONS)
        .acquire_timeout(connection::CONNECT_TIMEOUT)
        .after_connect(|_, _| {
            Box::pin(async {
                answered::connected();
                Ok(())
            })
        })
        .before_acquire(|_, _| Box::pin(async { answered_ok() }))
        .connect(url)
        .await
        .map_err(|err| open_failed(&err, StoreProblem::CannotConnectPostgres))?;
    POSTGRES_MIGRATIONS
        .run(&pool)
        .await
        .map_err(migration_error)?;
    Ok(pool)
}

/// A pool hook's verdict on a connection that was just opened or passed its ping (see
/// `answered.rs`): the database answered, keep the connection.
fn answered_ok() -> sqlx::Result<bool> {
    answered::answered();
    Ok(true)
}

/// Start-up failures: the returned error says what to check; the cause goes to the log
/// under the id the error names.
fn open_failed(err: &dyn std::fmt::Display, problem: StoreProblem) -> DroverError {
    let error_id = ErrorId::new();
    tracing::error!(%error_id, ?problem, cause = %err, "cannot open the store");
    DroverError::StoreUnavailable { error_id, problem }
}

fn migration_error(err: sqlx::migrate::MigrateError) -> DroverError {
    open_failed(&err, StoreProblem::CannotMigrate)
}
