//! The change feed between replicas on one PostgreSQL: a committed change that affects
//! directives is announced on the channel `drover_changes` (`pg_notify`), with a small
//! payload naming what changed; every replica listens and re-reads that part from the
//! tables. SQLite serves one replica: announcing does nothing and there is no listener.

use sqlx::postgres::{PgListener, PgNotification};

use super::{Backend, Store};
use crate::error::Result;

pub const CHANNEL: &str = "drover_changes";
/// Far below PostgreSQL's 8000-byte payload limit.
const MAX_PAYLOAD: usize = 512;

/// A subscription to the feed (PostgreSQL only).
pub struct ChangeListener {
    listener: PgListener,
}

/// What a listener hears next.
pub enum Heard {
    /// A payload, as announced.
    Change(String),
    /// The connection was lost (and is being re-established): anything announced meanwhile
    /// is gone, so the listener must resynchronise from the tables before trusting the feed.
    Gap,
}

impl Store {
    /// Announces `payload` to every replica listening (no-op on SQLite). Called right after
    /// the change committed; a crash in between is covered by each replica's periodic
    /// resynchronisation.
    pub async fn announce(&self, payload: &str) -> Result<()> {
        if let Backend::Postgres(pool) = &self.backend {
            let mut conn = super::connection::connection(pool, super::ACQUIRE_TIMEOUT).await?;
            let payload: String = payload.chars().take(MAX_PAYLOAD).collect();
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANNEL)
                .bind(payload)
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }

    /// Subscribes to the feed; `None` on SQLite (one replica, nothing to hear).
    pub async fn listen(&self) -> Result<Option<ChangeListener>> {
        let Backend::Postgres(pool) = &self.backend else {
            return Ok(None);
        };
        let mut listener = PgListener::connect_with(pool).await?;
        listener.listen(CHANNEL).await?;
        Ok(Some(ChangeListener { listener }))
    }
}

impl ChangeListener {
    pub async fn next(&mut self) -> Result<Heard> {
        let heard: Option<PgNotification> = self.listener.try_recv().await?;
        Ok(match heard {
            Some(notification) => Heard::Change(notification.payload().to_string()),
            None => Heard::Gap,
        })
    }
}
