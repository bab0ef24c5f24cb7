-- Enrolment (issue #11): join tokens that let an updater get a client certificate, and the
-- identity each enrolled agent holds. Only the SHA-256 of a token's secret is stored.
CREATE TABLE join_tokens (
    token_id      TEXT PRIMARY KEY,
    -- hex SHA-256 of the secret
    secret_hash   TEXT NOT NULL UNIQUE,
    -- the groups an updater may choose, comma-separated, the default first
    groups        TEXT NOT NULL,
    max_uses      INTEGER NOT NULL,
    uses          INTEGER NOT NULL DEFAULT 0,
    created_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    revoked_at_ms INTEGER,
    created_by    TEXT NOT NULL,
    -- an enrolment spends a use only while the token is live, unexpired and not used up
    CHECK (uses <= max_uses)
);
-- One identity per agent id, for good: a revoked id is never given out again, so a stolen
-- certificate for it can never speak for a newcomer.
CREATE TABLE agent_identities (
    agent_id           TEXT PRIMARY KEY,
    group_name         TEXT NOT NULL,
    token_id           TEXT NOT NULL REFERENCES join_tokens (token_id),
    enrolled_at_ms     INTEGER NOT NULL,
    -- the current certificate; a renewal replaces both
    certificate_serial TEXT NOT NULL,
    not_after_ms       INTEGER NOT NULL,
    revoked_at_ms      INTEGER
);
