-- Drover's initial schema (SQLite). Times are Unix milliseconds; enums are lower-case text.
CREATE TABLE agents (
    agent_id        TEXT PRIMARY KEY NOT NULL,
    hostname        TEXT NOT NULL,
    group_name      TEXT NOT NULL,
    channel         TEXT NOT NULL,
    installer       TEXT NOT NULL,
    agent_version   TEXT,
    updater_version TEXT NOT NULL,
    labels_json     TEXT NOT NULL,
    health          TEXT NOT NULL,
    updater_state   TEXT NOT NULL,
    first_seen_ms   INTEGER NOT NULL,
    last_seen_ms    INTEGER NOT NULL,
    last_report_json TEXT
);
CREATE INDEX agents_by_group ON agents (group_name);
CREATE INDEX agents_by_channel ON agents (channel);

CREATE TABLE channels (
    name          TEXT PRIMARY KEY NOT NULL,
    version       TEXT,
    critical      BOOLEAN NOT NULL DEFAULT FALSE,
    updated_at_ms INTEGER NOT NULL
);
INSERT INTO channels (name, version, critical, updated_at_ms) VALUES
    ('default', NULL, FALSE, 0),
    ('stable/rolling', NULL, FALSE, 0);

CREATE TABLE settings (
    key           TEXT PRIMARY KEY NOT NULL,
    value         TEXT NOT NULL,
    updated_at_ms INTEGER NOT NULL
);

CREATE TABLE update_reports (
    attempt_id   TEXT PRIMARY KEY NOT NULL,
    agent_id     TEXT NOT NULL,
    from_version TEXT NOT NULL,
    to_version   TEXT NOT NULL,
    outcome      TEXT NOT NULL,
    error        TEXT NOT NULL,
    started_ms   INTEGER NOT NULL,
    finished_ms  INTEGER NOT NULL,
    directive_id TEXT NOT NULL,
    rollout_id   TEXT NOT NULL,
    received_ms  INTEGER NOT NULL
);
CREATE INDEX update_reports_by_agent ON update_reports (agent_id, finished_ms);
