//! The signed release metadata bundle (#28), one row, only ever replaced by a newer one.

use std::collections::BTreeMap;

use super::{NewEvent, Store, insert_events, on_connection};
use crate::error::{DroverError, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRelease {
    /// The timestamp's version, as the bundle claims it.
    pub version: u64,
    /// File name -> content (TUF metadata is JSON text).
    pub files: BTreeMap<String, String>,
    pub bytes: u64,
    pub published_ms: i64,
}

impl Store {
    pub async fn release_metadata(&self) -> Result<Option<StoredRelease>> {
        let row: Option<(i64, String, i64, i64)> = on_connection!(self, conn => {
            sqlx::query_as(
                "SELECT version, files_json, bytes, published_ms FROM release_metadata WHERE id = 1",
            )
            .fetch_optional(conn)
            .await?
        });
        let Some((version, files_json, bytes, published_ms)) = row else {
            return Ok(None);
        };
        let files = serde_json::from_str(&files_json).map_err(|err| {
            DroverError::Internal(format!("the stored release metadata is unreadable: {err}"))
        })?;
        Ok(Some(StoredRelease {
            version: version as u64,
            files,
            bytes: bytes as u64,
            published_ms,
        }))
    }

    /// What identifies the stored bundle (version, bytes, when published) without reading
    /// it: the settings refresh reloads the files only when this changed.
    pub async fn release_metadata_stamp(&self) -> Result<Option<(u64, u64, i64)>> {
        let row: Option<(i64, i64, i64)> = on_connection!(self, conn => {
            sqlx::query_as("SELECT version, bytes, published_ms FROM release_metadata WHERE id = 1")
                .fetch_optional(conn)
                .await?
        });
        Ok(row.map(|(version, bytes, at)| (version as u64, bytes as u64, at)))
    }

    /// Stores `release` with its event, only if it is newer than the stored one
    /// (compare-and-set on the version): `Conflict` otherwise, and nothing changes.
    pub async fn publish_release_metadata(
        &self,
        release: &StoredRelease,
        event: &NewEvent,
    ) -> Result<()> {
        let files_json = serde_json::to_string(&release.files)
            .map_err(|err| DroverError::Internal(err.to_string()))?;
        let _write = self.write_gate().await;
        let stored = on_connection!(self, conn => {
            let mut tx = conn.begin().await?;
            let changed = sqlx::query(
                "INSERT INTO release_metadata (id, version, files_json, bytes, published_ms) \
                 VALUES (1, $1, $2, $3, $4) ON CONFLICT (id) DO UPDATE SET \
                 version = excluded.version, files_json = excluded.files_json, \
                 bytes = excluded.bytes, published_ms = excluded.published_ms \
                 WHERE release_metadata.version < excluded.version",
            )
            .bind(release.version as i64)
            .bind(&files_json)
            .bind(release.bytes as i64)
            .bind(release.published_ms)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if changed == 1 {
                insert_events!(tx, [event]);
                tx.commit().await?;
            }
            changed == 1
        });
        if !stored {
            return Err(DroverError::Conflict(format!(
                "release metadata version {} is not newer than the published one; nothing was \
                 changed (sign again: `droverctl releases sign` raises the version)",
                release.version
            )));
        }
        self.count_writes(2);
        Ok(())
    }
}
