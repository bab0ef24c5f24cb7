-- Admin credentials (issue #11): bearer tokens for droverctl and the JSON API. Only the
-- SHA-256 of each token's secret is stored; the secret is shown once, when it is made.
CREATE TABLE admin_credentials (
    credential_id BIGSERIAL PRIMARY KEY,
    name          TEXT NOT NULL,
    -- viewer, operator, admin
    role          TEXT NOT NULL,
    -- hex SHA-256 of the token
    token_hash    TEXT NOT NULL UNIQUE,
    created_at_ms BIGINT NOT NULL,
    -- set once, when revoked; a revoked credential authenticates nobody
    revoked_at_ms BIGINT
);
-- A name names one live credential; revoked ones keep their name for the audit trail.
CREATE UNIQUE INDEX admin_credentials_live_name ON admin_credentials (name)
    WHERE revoked_at_ms IS NULL;
