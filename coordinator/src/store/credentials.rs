//! Admin credentials: a name, a role and the SHA-256 of a bearer token. Creating and revoking
//! one is an admin change: it commits with its event and audit record (`insert_events!`).

use drover_rules::AdminRole;

use super::{NewEvent, Store, insert_events, on_connection};
use crate::error::{DroverError, Result};

/// One stored credential (never its secret: only the token's hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialRow {
    pub name: String,
    pub role: AdminRole,
    /// Hex SHA-256 of the token.
    pub token_hash: String,
    pub created_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
}

type CredentialTuple = (String, String, String, i64, Option<i64>);

const INSERT: &str = "INSERT INTO admin_credentials (name, role, token_hash, created_at_ms) \
    VALUES ($1, $2, $3, $4)";

fn taken(name: &str) -> DroverError {
    DroverError::Conflict(format!(
        "a live admin credential named '{name}' exists; revoke it first \
         (`droverctl admins revoke {name}`) or pick another name"
    ))
}

impl Store {
    /// Every credential, live and revoked, oldest first.
    pub async fn list_credentials(&self) -> Result<Vec<CredentialRow>> {
        let rows: Vec<CredentialTuple> = on_connection!(self, conn => {
            sqlx::query_as(
                "SELECT name, role, token_hash, created_at_ms, revoked_at_ms \
                 FROM admin_credentials ORDER BY created_at_ms, credential_id",
            )
            .fetch_all(conn)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(
                |(name, role, token_hash, created_at_ms, revoked_at_ms)| CredentialRow {
                    name,
                    // Written from the enum; an unknown text (a newer coordinator's) grants
                    // the least.
                    role: AdminRole::parse(&role).unwrap_or(AdminRole::Viewer),
                    token_hash,
                    created_at_ms,
                    revoked_at_ms,
                },
            )
            .collect())
    }

    /// Adds a credential with its event (and audit record) in one transaction. A live
    /// credential of the same name is a conflict.
    pub async fn create_credential(&self, row: &CredentialRow, events: &[NewEvent]) -> Result<()> {
        let _write = self.write_gate().await;
        on_connection!(self, conn => {
            let mut tx = conn.begin().await?;
            let inserted = sqlx::query(INSERT)
                .bind(&row.name)
                .bind(row.role.as_str())
                .bind(&row.token_hash)
                .bind(row.created_at_ms)
                .execute(&mut *tx)
                .await;
            if let Err(sqlx::Error::Database(db)) = &inserted
                && db.is_unique_violation()
            {
                return Err(taken(&row.name));
            }
            inserted?;
            insert_events!(tx, events);
            tx.commit().await?;
        });
        self.count_writes(1 + events.len() as u64);
        Ok(())
    }

    /// Adds `row` only if no credential exists at all (the bootstrap credential on a first
    /// start). Returns whether it was added.
    pub async fn create_first_credential(&self, row: &CredentialRow) -> Result<bool> {
        let _write = self.write_gate().await;
        let added = on_connection!(self, conn => {
            let mut tx = conn.begin().await?;
            let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM admin_credentials")
                .fetch_one(&mut *tx)
                .await?;
            if count > 0 {
                false
            } else {
                let inserted = sqlx::query(INSERT)
                    .bind(&row.name)
                    .bind(row.role.as_str())
                    .bind(&row.token_hash)
                    .bind(row.created_at_ms)
                    .execute(&mut *tx)
                    .await;
                match inserted {
                    // Another replica bootstrapped at the same moment: keep its credential.
                    Err(sqlx::Error::Database(db)) if db.is_unique_violation() => false,
                    other => {
                        other?;
                        tx.commit().await?;
                        true
                    }
                }
            }
        });
        if added {
            self.count_writes(1);
        }
        Ok(added)
    }

    /// Revokes the live credential `name` with its event (and audit record) in one
    /// transaction. Returns false (and writes nothing) when there is none.
    pub async fn revoke_credential(
        &self,
        name: &str,
        at_ms: i64,
        events: &[NewEvent],
    ) -> Result<bool> {
        const SQL: &str = "UPDATE admin_credentials SET revoked_at_ms = $1 \
            WHERE name = $2 AND revoked_at_ms IS NULL";
        self.revoke_once(SQL, name, at_ms, events).await
    }

    /// The one shape of every revocation (a credential, a join token, an agent identity):
    /// `sql` sets `revoked_at_ms = $1` on the live row keyed `$2`; the events (and their
    /// audit records) commit with it, or nothing is written when no live row matched.
    pub(super) async fn revoke_once(
        &self,
        sql: &'static str,
        key: &str,
        at_ms: i64,
        events: &[NewEvent],
    ) -> Result<bool> {
        let _write = self.write_gate().await;
        let revoked = on_connection!(self, conn => {
            let mut tx = conn.begin().await?;
            let done = sqlx::query(sql)
                .bind(at_ms)
                .bind(key)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if done > 0 {
                insert_events!(tx, events);
                tx.commit().await?;
            }
            done > 0
        });
        if revoked {
            self.count_writes(1 + events.len() as u64);
        }
        Ok(revoked)
    }
}
