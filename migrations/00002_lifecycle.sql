-- Deployment state and model lifecycle events (issue: model directory lifecycle).

-- +goose Up
-- The one deployment: which version is primary, the rollback stack and the
-- shadow settings, as JSON of understudy.Deployment. Restored at start.
CREATE TABLE deployment (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    state      TEXT    NOT NULL,
    updated_us INTEGER NOT NULL
);

-- Every lifecycle event: loaded, failed, incompatible, promoted, rolled_back,
-- unloaded, file_changed, file_removed, settings, primary_fallback.
CREATE TABLE events (
    id      INTEGER PRIMARY KEY,
    time_us INTEGER NOT NULL,
    kind    TEXT    NOT NULL,
    model   TEXT    NOT NULL,
    version TEXT,
    actor   TEXT    NOT NULL, -- admin, watcher or startup
    detail  TEXT
);
CREATE INDEX events_time ON events (time_us);
CREATE INDEX events_model ON events (model, time_us);

-- +goose Down
DROP TABLE events;
DROP TABLE deployment;
