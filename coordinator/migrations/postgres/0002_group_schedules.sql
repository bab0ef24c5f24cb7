-- Maintenance windows per group (UTC). days is a weekday bit set, Monday = bit 0.
CREATE TABLE group_schedules (
    group_name       TEXT PRIMARY KEY NOT NULL,
    days             BIGINT NOT NULL,
    start_minute_utc BIGINT NOT NULL,
    duration_minutes BIGINT NOT NULL,
    updated_at_ms    BIGINT NOT NULL
);
