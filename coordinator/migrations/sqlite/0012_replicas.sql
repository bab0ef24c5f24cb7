-- Several coordinators share PostgreSQL only; SQLite serves one replica, which is always
-- the reconciler. The column keeps the agents table's writes the same on both backends.
ALTER TABLE agents ADD COLUMN connected_on TEXT;
