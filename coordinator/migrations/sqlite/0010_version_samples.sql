-- Dashboard timeline (issue #12): agents by version, one sample a minute, written by the
-- coordinator's version sampler from memory and deleted by it after 31 days.
CREATE TABLE version_samples (
    at_ms BIGINT NOT NULL,
    agent_version TEXT NOT NULL,
    agents BIGINT NOT NULL,
    PRIMARY KEY (at_ms, agent_version)
);
