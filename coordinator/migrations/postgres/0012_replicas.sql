-- Several coordinators on one database (issue #14).
--
-- Which replica holds an agent's session (NULL: none), so every replica's rollout engine
-- knows who is connected anywhere; `replicas` says which replica ids are still alive.
ALTER TABLE agents ADD COLUMN connected_on TEXT;
-- When the facts the rollout engine reads last changed (database clock), so replicas read
-- only what changed since their last look. Set by a trigger: every writer keeps it right
-- without knowing about it, and last-seen flushes (every connected agent, every few
-- seconds) do not move it.
ALTER TABLE agents ADD COLUMN changed_ms BIGINT NOT NULL DEFAULT 0;
CREATE INDEX agents_by_changed ON agents (changed_ms);

CREATE FUNCTION drover_agent_changed() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'INSERT'
        OR NEW.group_name IS DISTINCT FROM OLD.group_name
        OR NEW.channel IS DISTINCT FROM OLD.channel
        OR NEW.agent_version IS DISTINCT FROM OLD.agent_version
        OR NEW.health IS DISTINCT FROM OLD.health
        OR NEW.last_report_json IS DISTINCT FROM OLD.last_report_json
        OR NEW.connected_on IS DISTINCT FROM OLD.connected_on
    THEN
        NEW.changed_ms := (extract(epoch FROM clock_timestamp()) * 1000)::bigint;
    END IF;
    RETURN NEW;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER agents_changed BEFORE INSERT OR UPDATE ON agents
    FOR EACH ROW EXECUTE FUNCTION drover_agent_changed();

-- One reconciler at a time: whoever holds the row's unexpired lease. `token` grows by one
-- with every new holder; each reconciler commit checks it in its own transaction (fencing),
-- so a leader that stalled past its lease can no longer write.
CREATE TABLE reconciler_lease (
    name       TEXT PRIMARY KEY NOT NULL,
    holder     TEXT NOT NULL,
    token      BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL
);

CREATE TABLE replicas (
    replica_id TEXT PRIMARY KEY NOT NULL,
    seen_ms    BIGINT NOT NULL
);
