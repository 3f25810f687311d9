-- Lossless shadowing (pkg/understudy/history.go): a shadow job that
-- shedding would drop is deferred into a backlog and run later from the
-- stored inputs (a backfill), and a newly loaded shadow runs on stored
-- traffic (a backtest). A report must be able to read each origin alone, so
-- shadow results and every rollup of them are kept per origin; and the
-- skip counters must say what became of the jobs that did not run live:
-- deferred, and dropped for which reason.
--
-- Rows and rollups stored before this migration are all live: the DEFAULTs
-- say so. origin goes last in the rollups' primary keys: the report reads
-- every origin at once far more often than one, and the reads by shadow,
-- version, span and start keep using the keys' prefixes. The histogram
-- buckets (shadow_rollup_buckets) belong to one rollup row through
-- rollup_id, so they are per origin without a column of their own.

-- +goose Up
ALTER TABLE shadow_results ADD COLUMN origin TEXT COLLATE "C" NOT NULL DEFAULT 'live';

ALTER TABLE shadow_rollups ADD COLUMN origin TEXT COLLATE "C" NOT NULL DEFAULT 'live';
ALTER TABLE shadow_rollups DROP CONSTRAINT shadow_rollups_pkey;
ALTER TABLE shadow_rollups ADD PRIMARY KEY (shadow, version, span, start, primary_model, primary_version, origin);

ALTER TABLE confusion_rollups ADD COLUMN origin TEXT COLLATE "C" NOT NULL DEFAULT 'live';
ALTER TABLE confusion_rollups DROP CONSTRAINT confusion_rollups_pkey;
ALTER TABLE confusion_rollups ADD PRIMARY KEY (shadow, version, span, start, primary_class, shadow_class, origin);

-- Jobs deferred into the backlog, by the request's minute. Each then ran
-- (a backfill pair), is still pending, or was dropped.
ALTER TABLE shadow_skips ADD COLUMN deferred BIGINT NOT NULL DEFAULT 0;

-- Dropped jobs by reason (understudy.Drop*), per minute of the request: the
-- reasons of a minute add up to its shadow_skips.dropped, which every
-- write adds to in the same transaction. Kept apart from shadow_skips so
-- that a new reason needs no new column.
CREATE TABLE shadow_drops (
    shadow  TEXT COLLATE "C" NOT NULL,
    version TEXT COLLATE "C" NOT NULL,
    minute  BIGINT NOT NULL, -- unix seconds / 60
    reason  TEXT COLLATE "C" NOT NULL,
    n       BIGINT NOT NULL,
    PRIMARY KEY (shadow, version, minute, reason)
);
CREATE INDEX shadow_drops_minute ON shadow_drops (minute);
-- Every job dropped so far was shed: there was no backlog.
INSERT INTO shadow_drops (shadow, version, minute, reason, n)
SELECT shadow, version, minute, 'shed', dropped FROM shadow_skips WHERE dropped > 0;

-- The deferred jobs still pending: a shadow version to run on a stored
-- request. Shared by every replica, so that any of them can run a job
-- another one deferred; a backfill result deletes its row in the
-- transaction that stores it.
CREATE TABLE shadow_backlog (
    request_id  TEXT COLLATE "C" NOT NULL,
    shadow      TEXT COLLATE "C" NOT NULL,
    version     TEXT COLLATE "C" NOT NULL,
    time_us     BIGINT NOT NULL, -- the request's time
    deferred_us BIGINT NOT NULL, -- when it was deferred
    PRIMARY KEY (request_id, shadow, version)
);
-- Backfill reads the oldest jobs first, in a total order; retention deletes
-- by time.
CREATE INDEX shadow_backlog_time ON shadow_backlog (time_us, request_id, shadow, version);

-- +goose Down
-- The schema before had one rollup row for every origin: the rollups of
-- the other origins are folded into the live ones rather than lost, so
-- that the rollups still add up to the rows kept.
DROP TABLE shadow_backlog;
DROP TABLE shadow_drops;
ALTER TABLE shadow_skips DROP COLUMN deferred;

INSERT INTO confusion_rollups AS t (shadow, version, span, start, primary_class, shadow_class, origin, n)
SELECT shadow, version, span, start, primary_class, shadow_class, 'live', sum(n)
FROM confusion_rollups WHERE origin <> 'live' GROUP BY shadow, version, span, start, primary_class, shadow_class
ON CONFLICT (shadow, version, span, start, primary_class, shadow_class, origin) DO UPDATE SET n = t.n + EXCLUDED.n;
DELETE FROM confusion_rollups WHERE origin <> 'live';
ALTER TABLE confusion_rollups DROP CONSTRAINT confusion_rollups_pkey;
ALTER TABLE confusion_rollups DROP COLUMN origin;
ALTER TABLE confusion_rollups ADD PRIMARY KEY (shadow, version, span, start, primary_class, shadow_class);

INSERT INTO shadow_rollups AS t (shadow, version, span, start, primary_model, primary_version, origin,
        pairs, ok, errors, timeouts, class_pairs, disagree_pairs, class_rows, agree_rows,
        float_pairs, elements, sum_abs, sum_sq, max_abs, cpu_us, cpu_runs)
SELECT shadow, version, span, start, primary_model, primary_version, 'live',
        sum(pairs), sum(ok), sum(errors), sum(timeouts), sum(class_pairs), sum(disagree_pairs), sum(class_rows), sum(agree_rows),
        sum(float_pairs), sum(elements), sum(sum_abs), sum(sum_sq), max(max_abs), sum(cpu_us), sum(cpu_runs)
FROM shadow_rollups WHERE origin <> 'live' GROUP BY shadow, version, span, start, primary_model, primary_version
ON CONFLICT (shadow, version, span, start, primary_model, primary_version, origin) DO UPDATE SET
    pairs = t.pairs + EXCLUDED.pairs, ok = t.ok + EXCLUDED.ok, errors = t.errors + EXCLUDED.errors,
    timeouts = t.timeouts + EXCLUDED.timeouts, class_pairs = t.class_pairs + EXCLUDED.class_pairs,
    disagree_pairs = t.disagree_pairs + EXCLUDED.disagree_pairs, class_rows = t.class_rows + EXCLUDED.class_rows,
    agree_rows = t.agree_rows + EXCLUDED.agree_rows, float_pairs = t.float_pairs + EXCLUDED.float_pairs,
    elements = t.elements + EXCLUDED.elements, sum_abs = t.sum_abs + EXCLUDED.sum_abs, sum_sq = t.sum_sq + EXCLUDED.sum_sq,
    max_abs = GREATEST(t.max_abs, EXCLUDED.max_abs),
    cpu_us = t.cpu_us + EXCLUDED.cpu_us, cpu_runs = t.cpu_runs + EXCLUDED.cpu_runs;
INSERT INTO shadow_rollup_buckets AS t (rollup_id, kind, bucket, n)
SELECT l.id, b.kind, b.bucket, sum(b.n)
FROM shadow_rollups o
JOIN shadow_rollup_buckets b ON b.rollup_id = o.id
JOIN shadow_rollups l ON l.origin = 'live' AND l.shadow = o.shadow AND l.version = o.version AND l.span = o.span
    AND l.start = o.start AND l.primary_model = o.primary_model AND l.primary_version = o.primary_version
WHERE o.origin <> 'live'
GROUP BY l.id, b.kind, b.bucket
ON CONFLICT (rollup_id, kind, bucket) DO UPDATE SET n = t.n + EXCLUDED.n;
DELETE FROM shadow_rollups WHERE origin <> 'live'; -- their buckets go with them (ON DELETE CASCADE)
ALTER TABLE shadow_rollups DROP CONSTRAINT shadow_rollups_pkey;
ALTER TABLE shadow_rollups DROP COLUMN origin;
ALTER TABLE shadow_rollups ADD PRIMARY KEY (shadow, version, span, start, primary_model, primary_version);

ALTER TABLE shadow_results DROP COLUMN origin;
