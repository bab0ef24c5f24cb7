-- Crash-safe state (issue: exactly-once rollout state).
-- Rollout transitions are compare-and-set on `revision`: a retried or duplicated pass that
-- expected an older revision writes nothing.
ALTER TABLE rollouts ADD COLUMN revision BIGINT NOT NULL DEFAULT 0;
-- At most one active rollout per channel, whatever the coordinator believes.
CREATE UNIQUE INDEX rollouts_one_active_per_channel ON rollouts (channel) WHERE status = 'active';

-- Reports are deduplicated per agent: one agent's attempt id can never acknowledge another's.
ALTER TABLE update_reports DROP CONSTRAINT update_reports_pkey;
ALTER TABLE update_reports ADD PRIMARY KEY (agent_id, attempt_id);
CREATE INDEX update_reports_by_rollout ON update_reports (rollout_id);

-- The finish time (the updater's clock) of the report in last_report_json: an older report
-- never replaces a newer one. (A report moves agent_version only from its from_version.)
ALTER TABLE agents ADD COLUMN last_report_finished_ms BIGINT NOT NULL DEFAULT 0;
UPDATE agents SET last_report_finished_ms = COALESCE((last_report_json::jsonb ->> 'finished_ms')::bigint, 0)
    WHERE last_report_json IS NOT NULL;
