//! The attacker holds the coordinator: its database (written here directly, behind the
//! coordinator's back, as a stolen database password allows) and its admin API.

use std::{collections::BTreeMap, path::Path};

use sqlx::{Connection, SqliteConnection};

pub struct Attacker {
    database: String,
}

impl Attacker {
    pub fn of(database: &Path) -> Self {
        Self {
            database: format!("sqlite://{}", database.display()),
        }
    }

    /// Makes the coordinator serve `files` as its release metadata (it reloads its store
    /// every second), claiming `version` so every updater is given it.
    pub async fn serve_bundle(&self, files: &BTreeMap<String, String>, version: i64) {
        let mut conn = SqliteConnection::connect(&self.database).await.unwrap();
        let bytes: usize = files.values().map(String::len).sum();
        let changed = sqlx::query(
            "UPDATE release_metadata SET version = $1, files_json = $2, bytes = $3 WHERE id = 1",
        )
        .bind(version)
        .bind(serde_json::to_string(files).unwrap())
        .bind(bytes as i64)
        .execute(&mut conn)
        .await
        .unwrap()
        .rows_affected();
        assert_eq!(changed, 1, "a release metadata row to overwrite");
    }
}
