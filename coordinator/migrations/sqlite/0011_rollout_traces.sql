-- OpenTelemetry (issue #13): each rollout is a trace. Its trace id and the rollout span's id
-- ("TRACEID-SPANID", hex), made when the rollout is created, so every span of the rollout
-- (groups, agents' attempts, updaters' steps) joins the same trace across restarts. Rollouts
-- made before tracing existed have none.
ALTER TABLE rollouts ADD COLUMN trace_parent TEXT;
