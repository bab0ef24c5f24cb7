-- History (issue #10): a rollout's timeline is read by rollout id, and `rollout list --all`
-- pages through every rollout, newest first.
CREATE INDEX events_by_rollout ON events (rollout_id, event_id);
CREATE INDEX rollouts_by_created ON rollouts (created_ms, rollout_id);
