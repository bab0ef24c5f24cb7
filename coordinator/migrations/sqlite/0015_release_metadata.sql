-- Signed release metadata (#28): the one bundle the coordinator carries to updaters, as the
-- release team signed it (file name -> content). Updaters verify it; the coordinator only
-- keeps it moving forward.
CREATE TABLE release_metadata (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL,
    files_json TEXT NOT NULL,
    bytes BIGINT NOT NULL,
    published_ms BIGINT NOT NULL
);
