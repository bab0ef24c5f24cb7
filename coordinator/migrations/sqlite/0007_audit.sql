-- The audit log (issue #11): every admin request that changed something (written in the
-- same transaction as the change), every refused one and every dry run.
CREATE TABLE audit_log (
    audit_id INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms   INTEGER NOT NULL,
    actor   TEXT NOT NULL,
    -- viewer, operator, admin
    role    TEXT NOT NULL,
    -- the API method, e.g. SetChannelVersion
    action  TEXT NOT NULL,
    -- what it acted on: a channel, group, agent or rollout's channel
    target  TEXT NOT NULL,
    -- ok, refused, dry_run
    result  TEXT NOT NULL,
    -- the change in words, or why it was refused
    detail  TEXT NOT NULL
);
CREATE INDEX audit_by_time ON audit_log (at_ms, audit_id);
