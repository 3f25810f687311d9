-- Several replicas may share one store (PostgreSQL); each stamps the rows it
-- writes with its id (--replica-id), and counts its traffic per minute so
-- that the report breaks a window down by replica without reading rows.
-- SQLite serves one process, but keeps the same schema as PostgreSQL.

-- +goose Up
ALTER TABLE predictions ADD COLUMN replica TEXT NOT NULL DEFAULT '';
ALTER TABLE shadow_results ADD COLUMN replica TEXT NOT NULL DEFAULT '';
ALTER TABLE events ADD COLUMN replica TEXT NOT NULL DEFAULT '';

-- Each replica's stored rows per minute (unix seconds / 60).
CREATE TABLE replica_minutes (
    replica  TEXT    NOT NULL,
    minute   INTEGER NOT NULL,
    requests INTEGER NOT NULL, -- predictions stored
    errors   INTEGER NOT NULL, -- of those, status not ok
    pairs    INTEGER NOT NULL, -- shadow results stored
    PRIMARY KEY (replica, minute)
) WITHOUT ROWID;
CREATE INDEX replica_minutes_minute ON replica_minutes (minute);

-- Rows stored before this migration count as replica ''.
INSERT INTO replica_minutes (replica, minute, requests, errors, pairs)
SELECT '', time_us / 60000000, COUNT(*), SUM(status != 'ok'), 0 FROM predictions GROUP BY time_us / 60000000;
INSERT INTO replica_minutes (replica, minute, requests, errors, pairs)
SELECT '', time_us / 60000000, 0, 0, COUNT(*) FROM shadow_results WHERE true GROUP BY time_us / 60000000
ON CONFLICT (replica, minute) DO UPDATE SET pairs = pairs + excluded.pairs;

-- +goose Down
DROP TABLE replica_minutes;
ALTER TABLE events DROP COLUMN replica;
ALTER TABLE shadow_results DROP COLUMN replica;
ALTER TABLE predictions DROP COLUMN replica;
