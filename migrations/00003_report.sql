-- The comparison report: the remaining comparison fields and costs per row,
-- and rollups that the writer maintains in the same transaction as the rows,
-- so that a report over millions of pairs reads a few hundred rollup rows
-- instead. Rows stored before this migration are not in the rollups.
--
-- Histogram columns (BLOB) are sparse bucket counts, encoded as pairs of
-- uvarints (bucket index minus the previous index, count), indexes ascending;
-- pkg/store/histogram.go defines the buckets and sparse.go the encoding.

-- +goose Up
ALTER TABLE shadow_results ADD COLUMN sum_sq_diff REAL;            -- Σ|Δ|² over the first float output
ALTER TABLE shadow_results ADD COLUMN elements INTEGER;            -- its element count
ALTER TABLE shadow_results ADD COLUMN primary_score REAL;          -- first row's top score, primary
ALTER TABLE shadow_results ADD COLUMN shadow_score REAL;           -- and shadow
ALTER TABLE shadow_results ADD COLUMN cpu_us INTEGER;              -- CPU time of the shadow run, NULL if unknown
ALTER TABLE shadow_results ADD COLUMN primary_latency_us INTEGER;  -- the primary's latency on the same request
ALTER TABLE predictions ADD COLUMN cpu_us INTEGER;                 -- NULL if unknown
ALTER TABLE models ADD COLUMN memory_bytes INTEGER;                -- resident memory added by loading it

-- Accuracy joins the labelled predictions of a window, usually a small
-- share, with their shadow results.
CREATE INDEX predictions_labelled ON predictions (time_us, request_id, label) WHERE label IS NOT NULL;

-- Rollups exist at three spans: minutes, hours and days (span 1, 60 and
-- 1440 minutes; start is a unix minute, a multiple of span). A report
-- covers its window with whole days, then hours, then minutes at the edges,
-- so it reads a few hundred rows whatever the window and the traffic.

-- Shadow rows per shadow version and primary version, by the shadow row's
-- time.
CREATE TABLE shadow_rollups (
    shadow          TEXT    NOT NULL,
    version         TEXT    NOT NULL,
    span            INTEGER NOT NULL,
    start           INTEGER NOT NULL,
    primary_model   TEXT    NOT NULL,
    primary_version TEXT    NOT NULL,
    pairs           INTEGER NOT NULL, -- stored shadow runs: ok + errors + timeouts
    ok              INTEGER NOT NULL,
    errors          INTEGER NOT NULL,
    timeouts        INTEGER NOT NULL,
    class_pairs     INTEGER NOT NULL, -- ok pairs with a class comparison
    disagree_pairs  INTEGER NOT NULL, -- of those, pairs with agreement < 1
    class_rows      INTEGER NOT NULL, -- rows of the first class output
    agree_rows      INTEGER NOT NULL, -- of those, rows whose classes agree
    float_pairs     INTEGER NOT NULL, -- ok pairs with a float comparison
    elements        INTEGER NOT NULL, -- elements behind sum_abs and sum_sq
    sum_abs         REAL    NOT NULL, -- Σ|Δ|
    sum_sq          REAL    NOT NULL, -- Σ|Δ|²
    max_abs         REAL,             -- largest per-pair max|Δ|
    diff_hist       BLOB,             -- per-pair max|Δ| of float pairs
    latency_hist    BLOB,             -- shadow latency of ok pairs, µs
    primary_latency_hist BLOB,        -- primary latency of the same pairs, µs
    cpu_us          INTEGER NOT NULL, -- Σ CPU time of the runs that measured it
    cpu_runs        INTEGER NOT NULL, -- how many did
    PRIMARY KEY (shadow, version, span, start, primary_model, primary_version)
) WITHOUT ROWID;
CREATE INDEX shadow_rollups_start ON shadow_rollups (span, start);

-- Predicted classes of every row of the first class output.
CREATE TABLE confusion_rollups (
    shadow        TEXT    NOT NULL,
    version       TEXT    NOT NULL,
    span          INTEGER NOT NULL,
    start         INTEGER NOT NULL,
    primary_class INTEGER NOT NULL,
    shadow_class  INTEGER NOT NULL,
    n             INTEGER NOT NULL,
    PRIMARY KEY (shadow, version, span, start, primary_class, shadow_class)
) WITHOUT ROWID;
CREATE INDEX confusion_rollups_start ON confusion_rollups (span, start);

-- Primary predictions per model version.
CREATE TABLE primary_rollups (
    span     INTEGER NOT NULL,
    start    INTEGER NOT NULL,
    model    TEXT    NOT NULL,
    version  TEXT    NOT NULL,
    requests INTEGER NOT NULL,
    errors   INTEGER NOT NULL, -- status not ok
    cpu_us   INTEGER NOT NULL,
    cpu_runs INTEGER NOT NULL,
    PRIMARY KEY (span, start, model, version)
) WITHOUT ROWID;

-- +goose Down
DROP TABLE primary_rollups;
DROP TABLE confusion_rollups;
DROP TABLE shadow_rollups;
DROP INDEX predictions_labelled;
ALTER TABLE models DROP COLUMN memory_bytes;
ALTER TABLE predictions DROP COLUMN cpu_us;
ALTER TABLE shadow_results DROP COLUMN primary_latency_us;
ALTER TABLE shadow_results DROP COLUMN cpu_us;
ALTER TABLE shadow_results DROP COLUMN shadow_score;
ALTER TABLE shadow_results DROP COLUMN primary_score;
ALTER TABLE shadow_results DROP COLUMN elements;
ALTER TABLE shadow_results DROP COLUMN sum_sq_diff;
