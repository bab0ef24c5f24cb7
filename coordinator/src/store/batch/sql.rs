//! Column lists of the JSON rows, spelled out per dialect: PostgreSQL reads them with
//! `jsonb_to_recordset`, SQLite with `json_each` + `json_extract`.

/// A re-hello keeps `first_seen_ms`, `updater_state` and the last report.
macro_rules! hello_upsert {
    () => {
        " ON CONFLICT (agent_id) DO UPDATE SET hostname = excluded.hostname, \
    group_name = excluded.group_name, channel = excluded.channel, \
    installer = excluded.installer, agent_version = excluded.agent_version, \
    updater_version = excluded.updater_version, labels_json = excluded.labels_json, \
    health = excluded.health, last_seen_ms = excluded.last_seen_ms, \
    connected_on = excluded.connected_on"
    };
}
pub const PG_HELLO: &str = concat!(
    "INSERT INTO agents (agent_id, hostname, group_name, channel, installer, agent_version, \
    updater_version, labels_json, health, updater_state, first_seen_ms, last_seen_ms, \
    connected_on) \
    SELECT agent_id, hostname, group_name, channel, installer, agent_version, updater_version, \
    labels_json, health, 'idle', now_ms, now_ms, connected_on \
    FROM jsonb_to_recordset($1::jsonb) AS r(agent_id text, hostname text, group_name text, \
    channel text, installer text, agent_version text, updater_version text, labels_json text, \
    health text, now_ms bigint, connected_on text)",
    hello_upsert!()
);
pub const SQLITE_HELLO: &str = concat!(
    "INSERT INTO agents (agent_id, hostname, group_name, channel, installer, agent_version, \
    updater_version, labels_json, health, updater_state, first_seen_ms, last_seen_ms, \
    connected_on) \
    SELECT json_extract(value, '$.agent_id'), json_extract(value, '$.hostname'), \
    json_extract(value, '$.group_name'), json_extract(value, '$.channel'), \
    json_extract(value, '$.installer'), json_extract(value, '$.agent_version'), \
    json_extract(value, '$.updater_version'), json_extract(value, '$.labels_json'), \
    json_extract(value, '$.health'), 'idle', json_extract(value, '$.now_ms'), \
    json_extract(value, '$.now_ms'), json_extract(value, '$.connected_on') \
    FROM json_each($1) WHERE true",
    hello_upsert!()
);

/// Only the replica that holds the session clears it: a newer session elsewhere stays.
pub const PG_DISCONNECT: &str = "UPDATE agents SET connected_on = NULL \
    FROM jsonb_to_recordset($1::jsonb) AS r(agent_id text, replica text) \
    WHERE agents.agent_id = r.agent_id AND agents.connected_on = r.replica";
pub const SQLITE_DISCONNECT: &str = "UPDATE agents SET connected_on = NULL \
    FROM (SELECT json_extract(value, '$.agent_id') AS agent_id, \
    json_extract(value, '$.replica') AS replica FROM json_each($1)) AS r \
    WHERE agents.agent_id = r.agent_id AND agents.connected_on = r.replica";

pub const PG_STATUS: &str = "UPDATE agents SET health = r.health, updater_state = r.updater_state, \
    agent_version = r.agent_version, last_seen_ms = r.now_ms \
    FROM jsonb_to_recordset($1::jsonb) AS r(agent_id text, health text, updater_state text, \
    agent_version text, now_ms bigint) WHERE agents.agent_id = r.agent_id";
pub const SQLITE_STATUS: &str = "UPDATE agents SET health = r.health, \
    updater_state = r.updater_state, agent_version = r.agent_version, last_seen_ms = r.now_ms \
    FROM (SELECT json_extract(value, '$.agent_id') AS agent_id, \
    json_extract(value, '$.health') AS health, \
    json_extract(value, '$.updater_state') AS updater_state, \
    json_extract(value, '$.agent_version') AS agent_version, \
    json_extract(value, '$.now_ms') AS now_ms FROM json_each($1)) AS r \
    WHERE agents.agent_id = r.agent_id";

/// An acknowledgement only moves forward within a rollout.
pub const PG_ACKS: &str = "UPDATE agents SET ack_rollout_id = r.rollout_id, ack_epoch = r.epoch \
    FROM jsonb_to_recordset($1::jsonb) AS r(agent_id text, rollout_id text, epoch bigint) \
    WHERE agents.agent_id = r.agent_id AND (agents.ack_rollout_id IS DISTINCT FROM \
    r.rollout_id OR agents.ack_epoch < r.epoch)";
pub const SQLITE_ACKS: &str = "UPDATE agents SET ack_rollout_id = r.rollout_id, \
    ack_epoch = r.epoch \
    FROM (SELECT json_extract(value, '$.agent_id') AS agent_id, \
    json_extract(value, '$.rollout_id') AS rollout_id, \
    json_extract(value, '$.epoch') AS epoch FROM json_each($1)) AS r \
    WHERE agents.agent_id = r.agent_id AND (agents.ack_rollout_id IS NOT r.rollout_id \
    OR agents.ack_epoch < r.epoch)";

pub const PG_REPORTS: &str = "INSERT INTO update_reports (agent_id, attempt_id, from_version, \
    to_version, outcome, error, started_ms, finished_ms, directive_id, rollout_id, received_ms) \
    SELECT agent_id, attempt_id, from_version, to_version, outcome, error, started_ms, \
    finished_ms, directive_id, rollout_id, received_ms \
    FROM jsonb_to_recordset($1::jsonb) AS r(agent_id text, attempt_id text, from_version text, \
    to_version text, outcome text, error text, started_ms bigint, finished_ms bigint, \
    directive_id text, rollout_id text, received_ms bigint) \
    ON CONFLICT (agent_id, attempt_id) DO NOTHING RETURNING agent_id";
pub const SQLITE_REPORTS: &str = "INSERT INTO update_reports (agent_id, attempt_id, \
    from_version, to_version, outcome, error, started_ms, finished_ms, directive_id, \
    rollout_id, received_ms) \
    SELECT json_extract(value, '$.agent_id'), json_extract(value, '$.attempt_id'), \
    json_extract(value, '$.from_version'), json_extract(value, '$.to_version'), \
    json_extract(value, '$.outcome'), json_extract(value, '$.error'), \
    json_extract(value, '$.started_ms'), json_extract(value, '$.finished_ms'), \
    json_extract(value, '$.directive_id'), json_extract(value, '$.rollout_id'), \
    json_extract(value, '$.received_ms') FROM json_each($1) WHERE true \
    ON CONFLICT (agent_id, attempt_id) DO NOTHING RETURNING agent_id";

pub const PG_EVENTS: &str = "INSERT INTO events (at_ms, kind, rollout_id, group_name, \
    agent_id, actor, text) SELECT at_ms, kind, rollout_id, group_name, agent_id, actor, text \
    FROM jsonb_to_recordset($1::jsonb) AS r(at_ms bigint, kind text, rollout_id text, \
    group_name text, agent_id text, actor text, text text)";
pub const SQLITE_EVENTS: &str = "INSERT INTO events (at_ms, kind, rollout_id, group_name, \
    agent_id, actor, text) SELECT json_extract(value, '$.at_ms'), \
    json_extract(value, '$.kind'), json_extract(value, '$.rollout_id'), \
    json_extract(value, '$.group_name'), json_extract(value, '$.agent_id'), \
    json_extract(value, '$.actor'), json_extract(value, '$.text') FROM json_each($1)";

pub const PG_LAST_REPORT: &str = "UPDATE agents SET last_report_json = r.report_json, \
    last_report_finished_ms = r.finished_ms \
    FROM jsonb_to_recordset($1::jsonb) AS r(agent_id text, report_json text, finished_ms bigint) \
    WHERE agents.agent_id = r.agent_id AND agents.last_report_finished_ms <= r.finished_ms";
pub const SQLITE_LAST_REPORT: &str = "UPDATE agents SET last_report_json = r.report_json, \
    last_report_finished_ms = r.finished_ms \
    FROM (SELECT json_extract(value, '$.agent_id') AS agent_id, \
    json_extract(value, '$.report_json') AS report_json, \
    json_extract(value, '$.finished_ms') AS finished_ms FROM json_each($1)) AS r \
    WHERE agents.agent_id = r.agent_id AND agents.last_report_finished_ms <= r.finished_ms";

/// A success moves the version only from the version the agent is recorded on, and only
/// when it is the agent's newest report (the updater's finish time, not arrival order:
/// runs after LAST_REPORT, so a newest report finds its own time there). An old report
/// resent after a reconnect never moves an agent back.
pub const PG_VERSION: &str = "UPDATE agents SET agent_version = r.to_version \
    FROM jsonb_to_recordset($1::jsonb) AS r(agent_id text, from_version text, \
    to_version text, finished_ms bigint) \
    WHERE agents.agent_id = r.agent_id \
    AND agents.agent_version IS NOT DISTINCT FROM NULLIF(r.from_version, '') \
    AND agents.last_report_finished_ms <= r.finished_ms \
    RETURNING agents.agent_id";
pub const SQLITE_VERSION: &str = "UPDATE agents SET agent_version = r.to_version \
    FROM (SELECT json_extract(value, '$.agent_id') AS agent_id, \
    json_extract(value, '$.from_version') AS from_version, \
    json_extract(value, '$.to_version') AS to_version, \
    json_extract(value, '$.finished_ms') AS finished_ms FROM json_each($1)) AS r \
    WHERE agents.agent_id = r.agent_id \
    AND agents.agent_version IS NOT DISTINCT FROM NULLIF(r.from_version, '') \
    AND agents.last_report_finished_ms <= r.finished_ms \
    RETURNING agents.agent_id";
