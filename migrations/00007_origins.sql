-- Lossless shadowing (pkg/understudy/history.go): a shadow job that shedding
-- would drop is deferred into a backlog and run later from the stored inputs
-- (a backfill), and a newly loaded shadow is run on stored traffic (a
-- backtest). Every shadow row and rollup records which of these it came
-- from, so that a report can show live traffic apart; and every job that
-- did not run live is accounted for: sampled out, deferred, or dropped for
-- a reason.

-- +goose Up
-- live (mirrored as the request was served), backfill or backtest. Existing
-- rows were all mirrored live.
ALTER TABLE shadow_results ADD COLUMN origin TEXT NOT NULL DEFAULT 'live';

-- The rollups are kept per origin. SQLite cannot change a primary key, so
-- the tables are rebuilt. origin comes last in the key: most reads (the
-- report's default, every origin) then scan the same ranges of
-- (shadow, version, span, start) as before, and a read of one origin
-- scans those ranges and skips the other origins' rows.
CREATE TABLE shadow_rollups_origin (
    shadow          TEXT    NOT NULL,
    version         TEXT    NOT NULL,
    span            INTEGER NOT NULL,
    start           INTEGER NOT NULL,
    primary_model   TEXT    NOT NULL,
    primary_version TEXT    NOT NULL,
    origin          TEXT    NOT NULL,
    pairs           INTEGER NOT NULL,
    ok              INTEGER NOT NULL,
    errors          INTEGER NOT NULL,
    timeouts        INTEGER NOT NULL,
    class_pairs     INTEGER NOT NULL,
    disagree_pairs  INTEGER NOT NULL,
    class_rows      INTEGER NOT NULL,
    agree_rows      INTEGER NOT NULL,
    float_pairs     INTEGER NOT NULL,
    elements        INTEGER NOT NULL,
    sum_abs         REAL    NOT NULL,
    sum_sq          REAL    NOT NULL,
    max_abs         REAL,
    diff_hist       BLOB,
    latency_hist    BLOB,
    primary_latency_hist BLOB,
    cpu_us          INTEGER NOT NULL,
    cpu_runs        INTEGER NOT NULL,
    PRIMARY KEY (shadow, version, span, start, primary_model, primary_version, origin)
) WITHOUT ROWID;
INSERT INTO shadow_rollups_origin
SELECT shadow, version, span, start, primary_model, primary_version, 'live',
    pairs, ok, errors, timeouts, class_pairs, disagree_pairs, class_rows, agree_rows,
    float_pairs, elements, sum_abs, sum_sq, max_abs, diff_hist, latency_hist, primary_latency_hist, cpu_us, cpu_runs
FROM shadow_rollups;
DROP TABLE shadow_rollups;
ALTER TABLE shadow_rollups_origin RENAME TO shadow_rollups;
CREATE INDEX shadow_rollups_start ON shadow_rollups (span, start);

CREATE TABLE confusion_rollups_origin (
    shadow        TEXT    NOT NULL,
    version       TEXT    NOT NULL,
    span          INTEGER NOT NULL,
    start         INTEGER NOT NULL,
    primary_class INTEGER NOT NULL,
    shadow_class  INTEGER NOT NULL,
    origin        TEXT    NOT NULL,
    n             INTEGER NOT NULL,
    PRIMARY KEY (shadow, version, span, start, primary_class, shadow_class, origin)
) WITHOUT ROWID;
INSERT INTO confusion_rollups_origin
SELECT shadow, version, span, start, primary_class, shadow_class, 'live', n FROM confusion_rollups;
DROP TABLE confusion_rollups;
ALTER TABLE confusion_rollups_origin RENAME TO confusion_rollups;
CREATE INDEX confusion_rollups_start ON confusion_rollups (span, start);

-- Jobs deferred into the backlog, by the request's minute; each of them
-- then ran (a backfill pair), is still pending, or was dropped.
ALTER TABLE shadow_skips ADD COLUMN deferred INTEGER NOT NULL DEFAULT 0;

-- Dropped jobs by reason (understudy.Drop*), by the request's minute.
-- shadow_skips.dropped stays the total, which these add up to; the writer
-- updates both in one transaction. Retention trims both by minute.
CREATE TABLE shadow_drops (
    shadow  TEXT    NOT NULL,
    version TEXT    NOT NULL,
    minute  INTEGER NOT NULL, -- unix seconds / 60
    reason  TEXT    NOT NULL,
    n       INTEGER NOT NULL,
    PRIMARY KEY (shadow, version, minute, reason)
) WITHOUT ROWID;
CREATE INDEX shadow_drops_minute ON shadow_drops (minute);
-- Before the backlog, every dropped job was shed.
INSERT INTO shadow_drops (shadow, version, minute, reason, n)
SELECT shadow, version, minute, 'shed', dropped FROM shadow_skips WHERE dropped > 0;

-- The backlog: shadow jobs deferred by shedding, to run from the stored
-- inputs of their request. A row goes when its backfill result is written
-- (in the same transaction), when it is dropped, or with its request's
-- prediction by retention.
CREATE TABLE shadow_backlog (
    request_id  TEXT    NOT NULL,
    shadow      TEXT    NOT NULL,
    version     TEXT    NOT NULL,
    time_us     INTEGER NOT NULL, -- the request's time
    deferred_us INTEGER NOT NULL, -- when it was deferred
    PRIMARY KEY (request_id, shadow, version)
) WITHOUT ROWID;
-- Backfill reads the oldest jobs first; retention deletes by time too.
CREATE INDEX shadow_backlog_time ON shadow_backlog (time_us, request_id, shadow, version);
-- The report counts a shadow version's pending jobs in a window.
CREATE INDEX shadow_backlog_shadow ON shadow_backlog (shadow, version, time_us);

-- +goose Down
DROP TABLE shadow_backlog;
DROP TABLE shadow_drops;
ALTER TABLE shadow_skips DROP COLUMN deferred;

-- Histograms cannot be merged in SQL, so going down keeps the live
-- rollups only: those of backfills and backtests are lost, while their
-- rows stay and read as live.
CREATE TABLE confusion_rollups_live (
    shadow        TEXT    NOT NULL,
    version       TEXT    NOT NULL,
    span          INTEGER NOT NULL,
    start         INTEGER NOT NULL,
    primary_class INTEGER NOT NULL,
    shadow_class  INTEGER NOT NULL,
    n             INTEGER NOT NULL,
    PRIMARY KEY (shadow, version, span, start, primary_class, shadow_class)
) WITHOUT ROWID;
INSERT INTO confusion_rollups_live
SELECT shadow, version, span, start, primary_class, shadow_class, n FROM confusion_rollups WHERE origin = 'live';
DROP TABLE confusion_rollups;
ALTER TABLE confusion_rollups_live RENAME TO confusion_rollups;
CREATE INDEX confusion_rollups_start ON confusion_rollups (span, start);

CREATE TABLE shadow_rollups_live (
    shadow          TEXT    NOT NULL,
    version         TEXT    NOT NULL,
    span            INTEGER NOT NULL,
    start           INTEGER NOT NULL,
    primary_model   TEXT    NOT NULL,
    primary_version TEXT    NOT NULL,
    pairs           INTEGER NOT NULL,
    ok              INTEGER NOT NULL,
    errors          INTEGER NOT NULL,
    timeouts        INTEGER NOT NULL,
    class_pairs     INTEGER NOT NULL,
    disagree_pairs  INTEGER NOT NULL,
    class_rows      INTEGER NOT NULL,
    agree_rows      INTEGER NOT NULL,
    float_pairs     INTEGER NOT NULL,
    elements        INTEGER NOT NULL,
    sum_abs         REAL    NOT NULL,
    sum_sq          REAL    NOT NULL,
    max_abs         REAL,
    diff_hist       BLOB,
    latency_hist    BLOB,
    primary_latency_hist BLOB,
    cpu_us          INTEGER NOT NULL,
    cpu_runs        INTEGER NOT NULL,
    PRIMARY KEY (shadow, version, span, start, primary_model, primary_version)
) WITHOUT ROWID;
INSERT INTO shadow_rollups_live
SELECT shadow, version, span, start, primary_model, primary_version,
    pairs, ok, errors, timeouts, class_pairs, disagree_pairs, class_rows, agree_rows,
    float_pairs, elements, sum_abs, sum_sq, max_abs, diff_hist, latency_hist, primary_latency_hist, cpu_us, cpu_runs
FROM shadow_rollups WHERE origin = 'live';
DROP TABLE shadow_rollups;
ALTER TABLE shadow_rollups_live RENAME TO shadow_rollups;
CREATE INDEX shadow_rollups_start ON shadow_rollups (span, start);

ALTER TABLE shadow_results DROP COLUMN origin;
