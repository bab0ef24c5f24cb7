//! Join tokens and agent identities. Spending a token and recording the identity it buys
//! is one transaction, compare-and-set on the token still being live, unexpired and not
//! used up, so two updaters racing for a token's last use cannot both get it.

use super::{AuditRecord, NewEvent, Store, audit::insert_audit, insert_events, on_connection};
use crate::error::Result;

/// One stored join token (never its secret: only its hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinTokenRow {
    pub token_id: String,
    pub secret_hash: String,
    /// The default first.
    pub groups: Vec<String>,
    pub max_uses: i64,
    pub uses: i64,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
    pub created_by: String,
}

/// An enrolled agent's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityRow {
    pub agent_id: String,
    pub group: String,
    pub token_id: String,
    pub enrolled_at_ms: i64,
    pub certificate_serial: String,
    pub not_after_ms: i64,
    pub revoked_at_ms: Option<i64>,
    /// The certificate a renewal replaced, accepted until the new one is first used.
    pub previous_serial: Option<String>,
}

/// Why an enrolment wrote nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnrolRefusal {
    /// The token was revoked, expired or used up between the check and the commit.
    TokenSpent,
    /// An identity with this agent id exists (live or revoked).
    AgentIdTaken,
}

type TokenTuple = (
    String,
    String,
    String,
    i64,
    i64,
    i64,
    i64,
    Option<i64>,
    String,
);
type IdentityTuple = (
    String,
    String,
    String,
    i64,
    String,
    i64,
    Option<i64>,
    Option<String>,
);

// Macros, not constants: sqlx takes only static SQL, and `concat!` only literals.
macro_rules! token_columns {
    () => {
        "token_id, secret_hash, groups, max_uses, uses, created_at_ms, expires_at_ms, \
         revoked_at_ms, created_by"
    };
}
macro_rules! identity_columns {
    () => {
        "agent_id, group_name, token_id, enrolled_at_ms, certificate_serial, not_after_ms, \
         revoked_at_ms, previous_serial"
    };
}

fn token_row(t: TokenTuple) -> JoinTokenRow {
    JoinTokenRow {
        token_id: t.0,
        secret_hash: t.1,
        groups: t.2.split(',').map(str::to_string).collect(),
        max_uses: t.3,
        uses: t.4,
        created_at_ms: t.5,
        expires_at_ms: t.6,
        revoked_at_ms: t.7,
        created_by: t.8,
    }
}

fn identity_row(t: IdentityTuple) -> IdentityRow {
    IdentityRow {
        agent_id: t.0,
        group: t.1,
        token_id: t.2,
        enrolled_at_ms: t.3,
        certificate_serial: t.4,
        not_after_ms: t.5,
        revoked_at_ms: t.6,
        previous_serial: t.7,
    }
}

impl Store {
    /// Adds a join token with its event (and audit record) in one transaction.
    pub async fn create_join_token(&self, row: &JoinTokenRow, events: &[NewEvent]) -> Result<()> {
        let _write = self.write_gate().await;
        on_connection!(self, conn => {
            let mut tx = conn.begin().await?;
            sqlx::query(
                "INSERT INTO join_tokens (token_id, secret_hash, groups, max_uses, uses, \
                 created_at_ms, expires_at_ms, created_by) VALUES ($1, $2, $3, $4, 0, $5, $6, $7)",
            )
            .bind(&row.token_id)
            .bind(&row.secret_hash)
            .bind(row.groups.join(","))
            .bind(row.max_uses)
            .bind(row.created_at_ms)
            .bind(row.expires_at_ms)
            .bind(&row.created_by)
            .execute(&mut *tx)
            .await?;
            insert_events!(tx, events);
            tx.commit().await?;
        });
        self.count_writes(1 + events.len() as u64);
        Ok(())
    }

    /// The newest `limit` tokens, newest first.
    pub async fn list_join_tokens(&self, limit: i64) -> Result<Vec<JoinTokenRow>> {
        let sql = concat!(
            "SELECT ",
            token_columns!(),
            " FROM join_tokens ORDER BY created_at_ms DESC, token_id LIMIT $1"
        );
        let rows: Vec<TokenTuple> = on_connection!(self, conn => {
            sqlx::query_as(sql).bind(limit).fetch_all(conn).await?
        });
        Ok(rows.into_iter().map(token_row).collect())
    }

    /// The token whose secret hashes to `secret_hash`.
    pub async fn join_token_by_hash(&self, secret_hash: &str) -> Result<Option<JoinTokenRow>> {
        let sql = concat!(
            "SELECT ",
            token_columns!(),
            " FROM join_tokens WHERE secret_hash = $1"
        );
        let row: Option<TokenTuple> = on_connection!(self, conn => {
            sqlx::query_as(sql).bind(secret_hash).fetch_optional(conn).await?
        });
        Ok(row.map(token_row))
    }

    pub async fn join_token(&self, token_id: &str) -> Result<Option<JoinTokenRow>> {
        let sql = concat!(
            "SELECT ",
            token_columns!(),
            " FROM join_tokens WHERE token_id = $1"
        );
        let row: Option<TokenTuple> = on_connection!(self, conn => {
            sqlx::query_as(sql).bind(token_id).fetch_optional(conn).await?
        });
        Ok(row.map(token_row))
    }

    /// Revokes the live token `token_id` with its events; false (nothing written) when it
    /// was revoked already.
    pub async fn revoke_join_token(
        &self,
        token_id: &str,
        at_ms: i64,
        events: &[NewEvent],
    ) -> Result<bool> {
        const SQL: &str = "UPDATE join_tokens SET revoked_at_ms = $1 \
            WHERE token_id = $2 AND revoked_at_ms IS NULL";
        self.revoke_once(SQL, token_id, at_ms, events).await
    }

    /// Spends one use of the token and records the identity, with its events, in one
    /// transaction; or writes nothing and says why.
    pub async fn enrol(
        &self,
        identity: &IdentityRow,
        at_ms: i64,
        events: &[NewEvent],
    ) -> Result<std::result::Result<(), EnrolRefusal>> {
        let _write = self.write_gate().await;
        let outcome = on_connection!(self, conn => {
            let mut tx = conn.begin().await?;
            let spent = sqlx::query(
                "UPDATE join_tokens SET uses = uses + 1 WHERE token_id = $1 \
                 AND revoked_at_ms IS NULL AND expires_at_ms > $2 AND uses < max_uses",
            )
            .bind(&identity.token_id)
            .bind(at_ms)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if spent == 0 {
                Err(EnrolRefusal::TokenSpent)
            } else {
                let inserted = sqlx::query(concat!(
                    "INSERT INTO agent_identities (",
                    identity_columns!(),
                    ") VALUES ($1, $2, $3, $4, $5, $6, NULL, NULL)"
                ))
                .bind(&identity.agent_id)
                .bind(&identity.group)
                .bind(&identity.token_id)
                .bind(identity.enrolled_at_ms)
                .bind(&identity.certificate_serial)
                .bind(identity.not_after_ms)
                .execute(&mut *tx)
                .await;
                match inserted {
                    Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                        Err(EnrolRefusal::AgentIdTaken)
                    }
                    other => {
                        other?;
                        insert_events!(tx, events);
                        tx.commit().await?;
                        Ok(())
                    }
                }
            }
        });
        if outcome.is_ok() {
            self.count_writes(2 + events.len() as u64);
        }
        Ok(outcome)
    }

    pub async fn agent_identity(&self, agent_id: &str) -> Result<Option<IdentityRow>> {
        let sql = concat!(
            "SELECT ",
            identity_columns!(),
            " FROM agent_identities WHERE agent_id = $1"
        );
        let row: Option<IdentityTuple> = on_connection!(self, conn => {
            sqlx::query_as(sql).bind(agent_id).fetch_optional(conn).await?
        });
        Ok(row.map(identity_row))
    }

    /// Up to `limit` identities ordered by agent id, after `after`.
    pub async fn list_agent_identities(&self, after: &str, limit: i64) -> Result<Vec<IdentityRow>> {
        let sql = concat!(
            "SELECT ",
            identity_columns!(),
            " FROM agent_identities WHERE agent_id > $1 ORDER BY agent_id LIMIT $2"
        );
        let rows: Vec<IdentityTuple> = on_connection!(self, conn => {
            sqlx::query_as(sql).bind(after).bind(limit).fetch_all(conn).await?
        });
        Ok(rows.into_iter().map(identity_row).collect())
    }

    /// The ids of every revoked agent (for the in-memory refusal set).
    pub async fn revoked_agent_ids(&self) -> Result<Vec<String>> {
        let rows: Vec<(String,)> = on_connection!(self, conn => {
            sqlx::query_as("SELECT agent_id FROM agent_identities WHERE revoked_at_ms IS NOT NULL")
                .fetch_all(conn)
                .await?
        });
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    /// Records a renewed certificate for a live identity, with its audit record if it has
    /// one, in one transaction; false (nothing written) when the identity is missing or
    /// revoked.
    pub async fn renew_identity(
        &self,
        agent_id: &str,
        serial: &str,
        not_after_ms: i64,
        audit: Option<&AuditRecord>,
    ) -> Result<bool> {
        let _write = self.write_gate().await;
        let done = on_connection!(self, conn => {
            let mut tx = conn.begin().await?;
            let done = sqlx::query(
                "UPDATE agent_identities SET previous_serial = certificate_serial, \
                 certificate_serial = $1, not_after_ms = $2 \
                 WHERE agent_id = $3 AND revoked_at_ms IS NULL",
            )
            .bind(serial)
            .bind(not_after_ms)
            .bind(agent_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if done > 0 {
                if let Some(record) = audit {
                    insert_audit!(&mut *tx, record);
                }
                tx.commit().await?;
            }
            done
        });
        self.count_writes(u64::from(done > 0) * (1 + u64::from(audit.is_some())));
        Ok(done > 0)
    }

    /// The renewed certificate was used: the one it replaced is refused from now on.
    pub async fn retire_previous_serial(&self, agent_id: &str, serial: &str) -> Result<()> {
        let _write = self.write_gate().await;
        let done = on_connection!(self, conn => {
            sqlx::query(
                "UPDATE agent_identities SET previous_serial = NULL \
                 WHERE agent_id = $1 AND certificate_serial = $2 AND previous_serial IS NOT NULL",
            )
            .bind(agent_id)
            .bind(serial)
            .execute(conn)
            .await?
            .rows_affected()
        });
        self.count_writes(done);
        Ok(())
    }

    /// Revokes a live identity with its events; false (nothing written) when there is no
    /// live identity with that id.
    pub async fn revoke_identity(
        &self,
        agent_id: &str,
        at_ms: i64,
        events: &[NewEvent],
    ) -> Result<bool> {
        const SQL: &str = "UPDATE agent_identities SET revoked_at_ms = $1 \
            WHERE agent_id = $2 AND revoked_at_ms IS NULL";
        self.revoke_once(SQL, agent_id, at_ms, events).await
    }
}
