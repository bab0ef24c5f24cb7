-- Crash-safe state (issue: exactly-once rollout state).
-- Rollout transitions are compare-and-set on `revision`: a retried or duplicated pass that
-- expected an older revision writes nothing.
ALTER TABLE rollouts ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;
-- At most one active rollout per channel, whatever the coordinator believes.
CREATE UNIQUE INDEX rollouts_one_active_per_channel ON rollouts (channel) WHERE status = 'active';

-- Reports are deduplicated per agent: one agent's attempt id can never acknowledge another's.
CREATE TABLE update_reports_v2 (
    agent_id     TEXT NOT NULL,
    attempt_id   TEXT NOT NULL,
    from_version TEXT NOT NULL,
    to_version   TEXT NOT NULL,
    outcome      TEXT NOT NULL,
    error        TEXT NOT NULL,
    started_ms   INTEGER NOT NULL,
    finished_ms  INTEGER NOT NULL,
    directive_id TEXT NOT NULL,
    rollout_id   TEXT NOT NULL,
    received_ms  INTEGER NOT NULL,
    PRIMARY KEY (agent_id, attempt_id)
);
INSERT INTO update_reports_v2 SELECT agent_id, attempt_id, from_version, to_version, outcome,
    error, started_ms, finished_ms, directive_id, rollout_id, received_ms FROM update_reports;
DROP TABLE update_reports;
ALTER TABLE update_reports_v2 RENAME TO update_reports;
CREATE INDEX update_reports_by_agent ON update_reports (agent_id, finished_ms);
CREATE INDEX update_reports_by_rollout ON update_reports (rollout_id);

-- The finish time (the updater's clock) of the report in last_report_json: an older report
-- never replaces a newer one. (A report moves agent_version only from its from_version.)
ALTER TABLE agents ADD COLUMN last_report_finished_ms INTEGER NOT NULL DEFAULT 0;
UPDATE agents SET last_report_finished_ms = COALESCE(json_extract(last_report_json, '$.finished_ms'), 0)
    WHERE last_report_json IS NOT NULL;
