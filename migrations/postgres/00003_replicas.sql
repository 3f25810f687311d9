-- Each replica's stored rows per minute, so that the report breaks a window
-- down by replica without reading rows (as migrations/00005_replicas.sql
-- does for SQLite). Every replica upserts its own rows; the counts add.

-- +goose Up
CREATE TABLE replica_minutes (
    replica  TEXT COLLATE "C" NOT NULL,
    minute   BIGINT NOT NULL, -- unix seconds / 60
    requests BIGINT NOT NULL, -- predictions stored
    errors   BIGINT NOT NULL, -- of those, status not ok
    pairs    BIGINT NOT NULL, -- shadow results stored
    PRIMARY KEY (replica, minute)
);
CREATE INDEX replica_minutes_minute ON replica_minutes (minute);

-- Rows stored before this migration, by the replica that stored them.
INSERT INTO replica_minutes (replica, minute, requests, errors, pairs)
SELECT replica, minute, sum(requests), sum(errors), sum(pairs) FROM (
    SELECT replica, time_us / 60000000 AS minute, count(*) AS requests, count(*) FILTER (WHERE status <> 'ok') AS errors, 0 AS pairs
    FROM predictions GROUP BY 1, 2
    UNION ALL
    SELECT replica, time_us / 60000000, 0, 0, count(*) FROM shadow_results GROUP BY 1, 2
) r GROUP BY replica, minute;

-- +goose Down
DROP TABLE replica_minutes;
