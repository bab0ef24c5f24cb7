-- Rollouts (spec and state as JSON: the engine owns their shape), the event log, pins.
CREATE TABLE rollouts (
    rollout_id  TEXT PRIMARY KEY NOT NULL,
    channel     TEXT NOT NULL,
    spec_json   TEXT NOT NULL,
    state_json  TEXT NOT NULL,
    -- active, done, rolledback
    status      TEXT NOT NULL,
    created_ms  BIGINT NOT NULL,
    updated_ms  BIGINT NOT NULL
);
CREATE INDEX rollouts_by_channel ON rollouts (channel, status);

CREATE TABLE events (
    event_id    BIGSERIAL PRIMARY KEY,
    at_ms       BIGINT NOT NULL,
    -- rollout, admin, update
    kind        TEXT NOT NULL,
    rollout_id  TEXT NOT NULL,
    group_name  TEXT NOT NULL,
    agent_id    TEXT NOT NULL,
    actor       TEXT NOT NULL,
    text        TEXT NOT NULL
);
CREATE INDEX events_by_agent ON events (agent_id, event_id);

CREATE TABLE agent_pins (
    agent_id     TEXT PRIMARY KEY NOT NULL,
    pinned_at_ms BIGINT NOT NULL,
    note         TEXT NOT NULL
);
