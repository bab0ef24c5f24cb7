-- Verifiable halts (issue #26): the last stop epoch each agent's updater acknowledged, and
-- of which rollout, so every replica can count who has heard a halt.
ALTER TABLE agents ADD COLUMN ack_rollout_id TEXT;
ALTER TABLE agents ADD COLUMN ack_epoch INTEGER NOT NULL DEFAULT 0;
