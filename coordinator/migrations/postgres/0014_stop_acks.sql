-- Verifiable halts (issue #26): the last stop epoch each agent's updater acknowledged, and
-- of which rollout, so every replica can count who has heard a halt.
ALTER TABLE agents ADD COLUMN ack_rollout_id TEXT;
ALTER TABLE agents ADD COLUMN ack_epoch BIGINT NOT NULL DEFAULT 0;

-- An acknowledgement is a fact the other replicas read through the change feed; so are an
-- agent's labels and installer, which rollouts stratify by.
CREATE OR REPLACE FUNCTION drover_agent_changed() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'INSERT'
        OR NEW.group_name IS DISTINCT FROM OLD.group_name
        OR NEW.channel IS DISTINCT FROM OLD.channel
        OR NEW.agent_version IS DISTINCT FROM OLD.agent_version
        OR NEW.health IS DISTINCT FROM OLD.health
        OR NEW.last_report_json IS DISTINCT FROM OLD.last_report_json
        OR NEW.connected_on IS DISTINCT FROM OLD.connected_on
        OR NEW.ack_rollout_id IS DISTINCT FROM OLD.ack_rollout_id
        OR NEW.ack_epoch IS DISTINCT FROM OLD.ack_epoch
        OR NEW.labels_json IS DISTINCT FROM OLD.labels_json
        OR NEW.installer IS DISTINCT FROM OLD.installer
    THEN
        NEW.changed_ms := (extract(epoch FROM clock_timestamp()) * 1000)::bigint;
    END IF;
    RETURN NEW;
END
$$ LANGUAGE plpgsql;
