-- Rollups that the writers maintain in the same transaction as the rows, so
-- that a report over millions of pairs reads a few hundred rollup rows. As
-- in SQLite they exist at three spans: minutes, hours and days (span 1, 60
-- and 1440 minutes; start is a unix minute, a multiple of span).
--
-- Several replicas add to the same rollup rows at once, so every column is
-- additive and every write is an upsert that adds (or takes the GREATEST):
-- never a read-modify-write. The histograms, which SQLite keeps as encoded
-- BLOBs and merges in Go, cannot be added in SQL in that form; here they are
-- rows of shadow_rollup_buckets, one per (rollup row, histogram, bucket)
-- with an added count, which the reader encodes back into the sparse form
-- of pkg/store/sparse.go.
--
-- The rollup tables are updated in place all the time: a lower fillfactor
-- leaves room on each page for HOT updates (no index columns change).

-- +goose Up
-- Shadow rows per shadow version and primary version, by the shadow row's
-- time.
CREATE TABLE shadow_rollups (
    id              BIGSERIAL        NOT NULL UNIQUE, -- what the buckets refer to
    shadow          TEXT COLLATE "C" NOT NULL,
    version         TEXT COLLATE "C" NOT NULL,
    span            BIGINT           NOT NULL,
    start           BIGINT           NOT NULL,
    primary_model   TEXT COLLATE "C" NOT NULL,
    primary_version TEXT COLLATE "C" NOT NULL,
    pairs           BIGINT           NOT NULL, -- stored shadow runs: ok + errors + timeouts
    ok              BIGINT           NOT NULL,
    errors          BIGINT           NOT NULL,
    timeouts        BIGINT           NOT NULL,
    class_pairs     BIGINT           NOT NULL, -- ok pairs with a class comparison
    disagree_pairs  BIGINT           NOT NULL, -- of those, pairs with agreement < 1
    class_rows      BIGINT           NOT NULL, -- rows of the first class output
    agree_rows      BIGINT           NOT NULL, -- of those, rows whose classes agree
    float_pairs     BIGINT           NOT NULL, -- ok pairs with a float comparison
    elements        BIGINT           NOT NULL, -- elements behind sum_abs and sum_sq
    sum_abs         DOUBLE PRECISION NOT NULL, -- Σ|Δ|
    sum_sq          DOUBLE PRECISION NOT NULL, -- Σ|Δ|²
    max_abs         DOUBLE PRECISION,          -- largest per-pair max|Δ|
    cpu_us          BIGINT           NOT NULL, -- Σ CPU time of the runs that measured it
    cpu_runs        BIGINT           NOT NULL, -- how many did
    PRIMARY KEY (shadow, version, span, start, primary_model, primary_version)
) WITH (fillfactor = 70);
CREATE INDEX shadow_rollups_start ON shadow_rollups (span, start);

-- The histograms of shadow_rollups: kind 0 is per-pair max|Δ| of float
-- pairs (store.DiffBuckets), 1 the shadow's latency of ok pairs and 2 the
-- primary's latency of the same pairs (µs, store.LatencyBuckets). Only
-- buckets with a count have a row.
CREATE TABLE shadow_rollup_buckets (
    rollup_id BIGINT   NOT NULL REFERENCES shadow_rollups (id) ON DELETE CASCADE,
    kind      SMALLINT NOT NULL,
    bucket    INTEGER  NOT NULL,
    n         BIGINT   NOT NULL,
    PRIMARY KEY (rollup_id, kind, bucket)
) WITH (fillfactor = 70);

-- Predicted classes of every row of the first class output.
CREATE TABLE confusion_rollups (
    shadow        TEXT COLLATE "C" NOT NULL,
    version       TEXT COLLATE "C" NOT NULL,
    span          BIGINT NOT NULL,
    start         BIGINT NOT NULL,
    primary_class BIGINT NOT NULL,
    shadow_class  BIGINT NOT NULL,
    n             BIGINT NOT NULL,
    PRIMARY KEY (shadow, version, span, start, primary_class, shadow_class)
) WITH (fillfactor = 70);
CREATE INDEX confusion_rollups_start ON confusion_rollups (span, start);

-- Primary predictions per model version.
CREATE TABLE primary_rollups (
    span     BIGINT NOT NULL,
    start    BIGINT NOT NULL,
    model    TEXT COLLATE "C" NOT NULL,
    version  TEXT COLLATE "C" NOT NULL,
    requests BIGINT NOT NULL,
    errors   BIGINT NOT NULL, -- status not ok
    cpu_us   BIGINT NOT NULL,
    cpu_runs BIGINT NOT NULL,
    PRIMARY KEY (span, start, model, version)
) WITH (fillfactor = 70);

-- +goose Down
DROP TABLE primary_rollups;
DROP TABLE confusion_rollups;
DROP TABLE shadow_rollup_buckets;
DROP TABLE shadow_rollups;
