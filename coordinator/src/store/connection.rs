//! How a store call gets a connection: it waits at most `ACQUIRE_TIMEOUT`, but opening a
//! new connection is not bounded by that wait.
//!
//! sqlx opens a connection inside the caller's acquire and bounds it by the caller's
//! deadline. On a saturated machine a PostgreSQL connect (TLS, authentication, a forked
//! backend) can take longer than a caller waits; every caller then cancels its connect
//! half-way, the pool shrinks to the few connections that survive, and replicas report
//! "unreachable" while the server answers (seen with 100k updaters across 6 replicas).
//! Here the acquire runs as its own task under the pool's longer `CONNECT_TIMEOUT`: a
//! caller that stops waiting leaves it to finish, and the connection it opens goes back to
//! the pool for the next call.

use std::time::Duration;

use sqlx::{Database, Pool, pool::PoolConnection};

/// How long opening one connection may take (the pool's own acquire deadline), however
/// briefly the call that asked for it waits. sqlx retries a refused connect with a backoff
/// of at most a fifth of this, so a database that comes back is reconnected within a second.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A pooled connection within `wait`, or why there was none (`PoolTimedOut` when the wait
/// ran out, classified in `error.rs`).
pub(super) async fn connection<DB: Database>(
    pool: &Pool<DB>,
    wait: Duration,
) -> sqlx::Result<PoolConnection<DB>> {
    // Dropping the handle detaches the task: a connection it gets later is dropped with
    // its output, which returns it to the pool.
    let acquiring = tokio::spawn(pool.acquire());
    match tokio::time::timeout(wait, acquiring).await {
        Ok(Ok(acquired)) => acquired,
        // A panic in the pool is the caller's, as it would be without the task.
        Ok(Err(join)) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
        // The runtime is shutting down.
        Ok(Err(_)) => Err(sqlx::Error::PoolClosed),
        Err(_) => Err(sqlx::Error::PoolTimedOut),
    }
}
