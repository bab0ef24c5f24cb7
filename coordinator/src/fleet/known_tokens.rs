//! The hashes of the join tokens this process knows to be live, so the enrolment edge can
//! tell an honest call (a known token) from a guess before it spends a store lookup, and
//! give each its own budget: guesses cannot use up the honest ones'. Only a hint for
//! rate limiting; the store decides. Loaded at start, kept on create, revoke and lookup
//! (a token made on another replica is learnt at its first use).

use std::collections::HashSet;

use parking_lot::RwLock;

use crate::store::JoinTokenRow;

/// More live tokens than this are still honoured; the excess is just not remembered.
pub const MAX_KNOWN_TOKENS: usize = 10_000;

#[derive(Default)]
pub struct KnownTokens {
    hashes: RwLock<HashSet<String>>,
}

impl KnownTokens {
    pub fn contains(&self, secret_hash: &str) -> bool {
        self.hashes.read().contains(secret_hash)
    }

    /// Remembers a live token, forgets one that is not (revoked, expired, used up).
    pub fn learn(&self, row: &JoinTokenRow, now_ms: i64) {
        let live =
            row.revoked_at_ms.is_none() && row.expires_at_ms > now_ms && row.uses < row.max_uses;
        let mut hashes = self.hashes.write();
        if !live {
            hashes.remove(&row.secret_hash);
        } else if hashes.len() < MAX_KNOWN_TOKENS {
            hashes.insert(row.secret_hash.clone());
        }
    }

    pub fn forget(&self, secret_hash: &str) {
        self.hashes.write().remove(secret_hash);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(hash: &str) -> JoinTokenRow {
        JoinTokenRow {
            token_id: "t".into(),
            secret_hash: hash.into(),
            groups: vec!["dev".into()],
            max_uses: 2,
            uses: 0,
            created_at_ms: 0,
            expires_at_ms: 1_000,
            revoked_at_ms: None,
            created_by: "admin".into(),
        }
    }

    #[test]
    fn only_live_tokens_are_known() {
        let known = KnownTokens::default();
        known.learn(&row("a"), 10);
        assert!(known.contains("a"));
        known.learn(
            &JoinTokenRow {
                uses: 2,
                ..row("a")
            },
            10,
        );
        assert!(!known.contains("a"), "used up");
        known.learn(&row("b"), 1_000);
        assert!(!known.contains("b"), "expired");
        known.learn(
            &JoinTokenRow {
                revoked_at_ms: Some(5),
                ..row("c")
            },
            10,
        );
        assert!(!known.contains("c"), "revoked");
        known.learn(&row("d"), 10);
        known.forget("d");
        assert!(!known.contains("d"));
    }
}
