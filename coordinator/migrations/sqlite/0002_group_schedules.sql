-- Maintenance windows per group (UTC). days is a weekday bit set, Monday = bit 0.
CREATE TABLE group_schedules (
    group_name       TEXT PRIMARY KEY NOT NULL,
    days             INTEGER NOT NULL,
    start_minute_utc INTEGER NOT NULL,
    duration_minutes INTEGER NOT NULL,
    updated_at_ms    INTEGER NOT NULL
);
