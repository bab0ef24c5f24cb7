-- Readiness and retention (PostgreSQL).
-- One row, upserted by the readiness task to prove the store accepts writes.
CREATE TABLE readiness_probe (
    probe         TEXT PRIMARY KEY NOT NULL,
    checked_at_ms BIGINT NOT NULL
);
-- Retention prunes events by age (the count uses the primary key) ...
CREATE INDEX events_by_time ON events (at_ms);
-- ... and update reports by receive time, keeping each agent's newest.
CREATE INDEX update_reports_by_received ON update_reports (received_ms);
CREATE INDEX update_reports_by_agent_received ON update_reports (agent_id, received_ms, attempt_id);
