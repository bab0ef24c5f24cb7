//! Admin identities: bearer tokens with a role. The live credentials are cached in memory
//! (keyed by the token's SHA-256), so authenticating a request reads no store; the cache is
//! reloaded after every create or revoke here, and by the periodic settings refresh for
//! changes made by other replicas. Secrets are never stored, logged or returned again: only
//! `create` sees one, once.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicI64, AtomicU64, Ordering},
    },
};

use drover_rules::AdminRole;
use parking_lot::RwLock;
use sha2::{Digest, Sha256};

use super::{Caller, Fleet, effects::Effect};
use crate::{
    domain::{now_ms, validate},
    error::{DroverError, Result},
    store::CredentialRow,
};

/// The credential made on a first start, whose token goes into the admin profile.
pub const BOOTSTRAP_NAME: &str = "bootstrap";
const TOKEN_PREFIX: &str = "drover_";
/// Longer tokens are not ours; they are refused before hashing.
const MAX_TOKEN_LEN: usize = 256;
/// Unauthenticated requests are counted; a warning is logged at most this often.
const WARN_EVERY_MS: i64 = 10_000;

/// Who is calling: a credential's name and role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub role: AdminRole,
}

/// The live credentials, by the SHA-256 of their token.
#[derive(Default)]
pub struct AdminCredentials {
    live: RwLock<HashMap<[u8; 32], Arc<Identity>>>,
    /// `--insecure` (plaintext, loopback only): no tokens, every caller is an admin.
    open: std::sync::atomic::AtomicBool,
    unauthenticated: AtomicU64,
    last_warned_ms: AtomicI64,
    /// Serializes read-and-replace, so a periodic reload that read before a revoke committed
    /// can never put the revoked token back after the revoke's own reload.
    reload: tokio::sync::Mutex<()>,
}

/// A new token: `drover_` and 32 random bytes in hex.
pub fn new_token() -> String {
    let secret: [u8; 32] = rand::random();
    format!("{TOKEN_PREFIX}{}", hex::encode(secret))
}

fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn unauthenticated(problem: &str) -> DroverError {
    DroverError::Unauthenticated(format!(
        "{problem}; set DROVER_PROFILE to the admin-profile.json in the coordinator's data \
         directory (its credentials carry a token), or pass a token with DROVER_TOKEN \
         (HTTP: the header `authorization: Bearer TOKEN`)"
    ))
}

impl AdminCredentials {
    /// With `--insecure`: every request is the insecure admin, as before credentials existed.
    pub fn open_without_tokens(&self) {
        self.open.store(true, Ordering::Relaxed);
    }

    /// The caller an `authorization` header value names (`Bearer TOKEN`).
    pub fn authenticate(&self, authorization: Option<&[u8]>) -> Result<Arc<Identity>> {
        if self.open.load(Ordering::Relaxed) {
            return Ok(Arc::new(Identity {
                name: "insecure".into(),
                role: AdminRole::Admin,
            }));
        }
        let token = authorization
            .and_then(|value| std::str::from_utf8(value).ok())
            .and_then(|value| {
                // The scheme is case-insensitive (RFC 9110).
                let (scheme, token) = value.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then_some(token)
            })
            .map(str::trim);
        let found = match token {
            None => Err(unauthenticated("no admin token was sent")),
            Some(token) if token.len() > MAX_TOKEN_LEN => {
                Err(unauthenticated("the admin token is unknown or revoked"))
            }
            Some(token) => self
                .live
                .read()
                .get(&token_hash(token))
                .cloned()
                .ok_or_else(|| unauthenticated("the admin token is unknown or revoked")),
        };
        if found.is_err() {
            self.count_unauthenticated();
        }
        found
    }

    /// Counted; logged at most every ten seconds, never with the token.
    fn count_unauthenticated(&self) {
        let total = self.unauthenticated.fetch_add(1, Ordering::Relaxed) + 1;
        let now = now_ms();
        let last = self.last_warned_ms.load(Ordering::Relaxed);
        if now - last >= WARN_EVERY_MS
            && self
                .last_warned_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                total,
                "admin requests without a valid token refused (no token, or an unknown or revoked one)"
            );
        }
    }

    /// How many requests were refused for want of a valid token.
    pub fn unauthenticated_count(&self) -> u64 {
        self.unauthenticated.load(Ordering::Relaxed)
    }

    fn replace(&self, rows: &[CredentialRow]) {
        let live = rows
            .iter()
            .filter(|row| row.revoked_at_ms.is_none())
            .filter_map(|row| {
                let mut hash = [0u8; 32];
                hex::decode_to_slice(&row.token_hash, &mut hash).ok()?;
                let identity = Identity {
                    name: row.name.clone(),
                    role: row.role,
                };
                Some((hash, Arc::new(identity)))
            })
            .collect();
        *self.live.write() = live;
    }
}

impl Fleet {
    pub fn admins(&self) -> &AdminCredentials {
        &self.admins
    }

    /// Re-reads the credentials into the cache.
    pub async fn reload_credentials(&self) -> Result<()> {
        let _serialized = self.admins.reload.lock().await;
        let rows = self.store().list_credentials().await?;
        self.admins.replace(&rows);
        Ok(())
    }

    /// Whether the store has no credential yet (a first start).
    pub async fn needs_bootstrap_credential(&self) -> Result<bool> {
        Ok(self.store().list_credentials().await?.is_empty())
    }

    /// Commits the bootstrap credential for `token` unless a credential exists already; the
    /// caller wrote the token into the admin profile first, so no crash loses the only key.
    pub async fn create_bootstrap_credential(&self, token: &str) -> Result<bool> {
        let row = CredentialRow {
            name: BOOTSTRAP_NAME.into(),
            role: AdminRole::Admin,
            token_hash: hex::encode(token_hash(token)),
            created_at_ms: now_ms(),
            revoked_at_ms: None,
        };
        let added = self.store().create_first_credential(&row).await?;
        self.reload_credentials().await?;
        Ok(added)
    }

    /// Every credential, live and revoked (never a secret).
    pub async fn credentials(&self) -> Result<Vec<CredentialRow>> {
        self.store().list_credentials().await
    }

    /// A new credential and its token (shown once; `None` for a dry run).
    pub async fn create_credential(
        &self,
        name: &str,
        role: AdminRole,
        caller: &Caller,
        dry_run: bool,
    ) -> Result<(CredentialRow, Option<String>, Effect)> {
        validate::name("admin name", name)?;
        let text = format!("admin credential {name} created with role {role}");
        if self
            .admins
            .live
            .read()
            .values()
            .any(|identity| identity.name == name)
        {
            return Err(DroverError::Conflict(format!(
                "a live admin credential named '{name}' exists; revoke it first \
                 (`droverctl admins revoke {name}`) or pick another name"
            )));
        }
        let token = new_token();
        let row = CredentialRow {
            name: name.to_string(),
            role,
            token_hash: hex::encode(token_hash(&token)),
            created_at_ms: now_ms(),
            revoked_at_ms: None,
        };
        let effect = Effect::new(dry_run, text.clone(), 0);
        if dry_run {
            return Ok((row, None, effect));
        }
        let event = self.admin_event(caller, text);
        self.store().create_credential(&row, &[event]).await?;
        self.reload_credentials().await?;
        self.announce(super::change_feed::Change::Credentials).await;
        Ok((row, Some(token), effect))
    }

    /// Revokes the live credential `name`; its token is refused from the next request on.
    pub async fn revoke_credential(
        &self,
        name: &str,
        caller: &Caller,
        dry_run: bool,
    ) -> Result<(CredentialRow, Effect)> {
        validate::name("admin name", name)?;
        let rows = self.store().list_credentials().await?;
        let Some(mut row) = rows
            .into_iter()
            .find(|row| row.name == name && row.revoked_at_ms.is_none())
        else {
            return Err(DroverError::NotFound(format!(
                "no live admin credential is named '{name}'; `droverctl admins list` shows them"
            )));
        };
        if row.role == AdminRole::Admin
            && !self
                .admins
                .live
                .read()
                .values()
                .any(|other| other.role == AdminRole::Admin && other.name != name)
        {
            return Err(DroverError::FailedPrecondition(format!(
                "'{name}' is the last live admin credential; revoking it would leave nobody \
                 able to manage credentials; create another admin first \
                 (`droverctl admins create --name NAME --role admin`)"
            )));
        }
        let text = format!("admin credential {name} revoked");
        let effect = Effect::new(dry_run, text.clone(), 0);
        let at_ms = now_ms();
        row.revoked_at_ms = Some(at_ms);
        if dry_run {
            return Ok((row, effect));
        }
        let event = self.admin_event(caller, text);
        if !self
            .store()
            .revoke_credential(name, at_ms, &[event])
            .await?
        {
            return Err(DroverError::NotFound(format!(
                "no live admin credential is named '{name}' (revoked meanwhile); \
                 `droverctl admins list` shows them"
            )));
        }
        self.reload_credentials().await?;
        self.announce(super::change_feed::Change::Credentials).await;
        Ok((row, effect))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_authenticate_by_hash_and_revoked_ones_do_not() {
        let creds = AdminCredentials::default();
        let token = new_token();
        assert!(token.starts_with("drover_") && token.len() == 7 + 64);
        let mut row = CredentialRow {
            name: "ops".into(),
            role: AdminRole::Operator,
            token_hash: hex::encode(token_hash(&token)),
            created_at_ms: 1,
            revoked_at_ms: None,
        };
        creds.replace(std::slice::from_ref(&row));
        let header = format!("Bearer {token}");
        let who = creds.authenticate(Some(header.as_bytes())).unwrap();
        assert_eq!((who.name.as_str(), who.role), ("ops", AdminRole::Operator));
        let wrong = creds.authenticate(Some(b"Bearer drover_00")).unwrap_err();
        assert!(wrong.to_string().contains("DROVER_PROFILE"), "{wrong}");
        assert!(creds.authenticate(None).is_err());
        assert!(creds.authenticate(Some(token.as_bytes())).is_err());
        let lower = format!("bearer {token}");
        assert!(creds.authenticate(Some(lower.as_bytes())).is_ok());
        row.revoked_at_ms = Some(2);
        creds.replace(&[row]);
        assert!(creds.authenticate(Some(header.as_bytes())).is_err());
        assert_eq!(creds.unauthenticated_count(), 4);
        assert!(creds.authenticate(Some(lower.as_bytes())).is_err());
        assert_eq!(creds.unauthenticated_count(), 5);
    }
}
