//! Release channels as stored: a name, an optional static version and a critical flag.
//! Following channels (`default`, `stable/rolling`) are resolved to the control plane's
//! version by the fleet layer, not here.

use super::{NewEvent, Store, insert_events, on_connection};
use crate::error::{DroverError, Result};

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ChannelRow {
    pub name: String,
    pub version: Option<String>,
    pub critical: bool,
    pub updated_at_ms: i64,
}

impl Store {
    pub async fn list_channels(&self) -> Result<Vec<ChannelRow>> {
        let rows = on_connection!(self, conn => {
            sqlx::query_as("SELECT name, version, critical, updated_at_ms FROM channels ORDER BY name")
                .fetch_all(conn)
                .await?
        });
        Ok(rows)
    }

    pub async fn get_channel(&self, name: &str) -> Result<Option<ChannelRow>> {
        let row = on_connection!(self, conn => {
            sqlx::query_as(
                "SELECT name, version, critical, updated_at_ms FROM channels WHERE name = $1",
            )
            .bind(name)
            .fetch_optional(conn)
            .await?
        });
        Ok(row)
    }

    /// Creates the channel if it does not exist yet; the event commits with the change.
    pub async fn set_channel_version(
        &self,
        name: &str,
        version: &str,
        now_ms: i64,
        event: &NewEvent,
    ) -> Result<()> {
        let _write = self.write_gate().await;
        on_connection!(self, conn => {
            let mut tx = conn.begin().await?;
            sqlx::query(
                "INSERT INTO channels (name, version, critical, updated_at_ms) VALUES ($1, $2, FALSE, $3) \
                 ON CONFLICT (name) DO UPDATE SET version = excluded.version, \
                 updated_at_ms = excluded.updated_at_ms",
            )
            .bind(name)
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

    pub async fn set_channel_critical(
        &self,
        name: &str,
        critical: bool,
        now_ms: i64,
        event: &NewEvent,
    ) -> Result<()> {
        let _write = self.write_gate().await;
        let changed = on_connection!(self, conn => {
            let mut tx = conn.begin().await?;
            let changed = sqlx::query(
                "UPDATE channels SET critical = $2, updated_at_ms = $3 WHERE name = $1",
            )
            .bind(name)
            .bind(critical)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if changed > 0 {
                insert_events!(tx, [event]);
                tx.commit().await?;
            }
            changed
        });
        self.count_writes(2 * changed);
        if changed == 0 {
            return Err(DroverError::NotFound(format!(
                "channel '{name}' does not exist; create it with `droverctl channels set {name} VERSION`"
            )));
        }
        Ok(())
    }
}
