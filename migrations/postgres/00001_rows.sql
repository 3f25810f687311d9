-- The PostgreSQL schema: the SQLite one (../00001_init.sql to
-- ../00003_report.sql) in PostgreSQL types, in one step since it starts
-- fresh. Times are unix microseconds (BIGINT) unless the column says
-- otherwise. Stored JSON (tensor maps, comparisons, signatures, the
-- deployment) is TEXT, not JSONB: it is stored as encoded, byte for byte
-- (the inputs' sha256 is of those bytes), never parsed on the write path,
-- and never queried inside by SQL.
--
-- replica is the id of the server (Options.Replica) that stored the row:
-- several replicas write into one database.
--
-- Names and keys are COLLATE "C": compared and ordered byte by byte, as
-- SQLite and Go's strings.Compare do (store/rollup sorts with it), so that
-- both backends list models and shadows in one order whatever the
-- database's locale; and comparisons in the indexes are then memcmp.

-- +goose Up
-- Every answer of the primary model.
CREATE TABLE predictions (
    id            BIGSERIAL PRIMARY KEY,         -- increases in storage order
    request_id    TEXT COLLATE "C" NOT NULL,
    time_us       BIGINT           NOT NULL,
    model         TEXT COLLATE "C" NOT NULL,
    version       TEXT COLLATE "C" NOT NULL,
    inputs        TEXT,                          -- NULL when inputs_size is over the input cap
    inputs_sha256 TEXT COLLATE "C" NOT NULL,     -- hex sha256 of the inputs JSON, stored or not
    inputs_size   BIGINT           NOT NULL,     -- bytes of the inputs JSON
    outputs       TEXT,                          -- NULL when the run failed
    latency_us    BIGINT           NOT NULL,
    status        TEXT COLLATE "C" NOT NULL,     -- ok or error
    error         TEXT,
    label         DOUBLE PRECISION,              -- ground truth, set later by POST /labels
    label_time_us BIGINT,
    cpu_us        BIGINT,                        -- NULL if unknown
    replica       TEXT COLLATE "C" NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX predictions_request_id ON predictions (request_id);
CREATE INDEX predictions_time ON predictions (time_us);
-- Accuracy joins the labelled predictions of a window, usually a small
-- share, with their shadow results.
CREATE INDEX predictions_labelled ON predictions (time_us) INCLUDE (request_id, label) WHERE label IS NOT NULL;

-- Every shadow answer with its comparison to the primary. No foreign key to
-- predictions: a lost prediction row must not cost the shadow row.
CREATE TABLE shadow_results (
    id                 BIGSERIAL PRIMARY KEY,    -- increases in storage order
    request_id         TEXT COLLATE "C" NOT NULL,
    time_us            BIGINT           NOT NULL, -- when the shadow run finished
    shadow             TEXT COLLATE "C" NOT NULL,
    version            TEXT COLLATE "C" NOT NULL,
    primary_model      TEXT COLLATE "C" NOT NULL,
    primary_version    TEXT COLLATE "C" NOT NULL,
    outputs            TEXT,                      -- NULL unless status is ok
    latency_us         BIGINT           NOT NULL,
    status             TEXT COLLATE "C" NOT NULL, -- ok, error or timeout
    error              TEXT,
    agreement          DOUBLE PRECISION,          -- fraction of rows whose class agrees
    primary_class      BIGINT,                    -- first row's class, for confusion matrices
    shadow_class       BIGINT,
    max_abs_diff       DOUBLE PRECISION,
    mean_abs_diff      DOUBLE PRECISION,
    comparison         TEXT,                      -- JSON of understudy.Comparison
    sum_sq_diff        DOUBLE PRECISION,          -- Σ|Δ|² over the first float output
    elements           BIGINT,                    -- its element count
    primary_score      DOUBLE PRECISION,          -- first row's top score, primary
    shadow_score       DOUBLE PRECISION,          -- and shadow
    cpu_us             BIGINT,                    -- CPU time of the shadow run, NULL if unknown
    primary_latency_us BIGINT,                    -- the primary's latency on the same request
    replica            TEXT COLLATE "C" NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX shadow_results_request_id ON shadow_results (request_id, shadow, version);
CREATE INDEX shadow_results_shadow_time ON shadow_results (shadow, version, time_us);
CREATE INDEX shadow_results_time ON shadow_results (time_us);

-- Jobs a shadow did not run, per minute, summed over every replica.
CREATE TABLE shadow_skips (
    shadow      TEXT COLLATE "C" NOT NULL,
    version     TEXT COLLATE "C" NOT NULL,
    minute      BIGINT NOT NULL, -- unix seconds / 60
    sampled_out BIGINT NOT NULL DEFAULT 0,
    dropped     BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (shadow, version, minute)
);
CREATE INDEX shadow_skips_minute ON shadow_skips (minute);

-- Every model version a server has seen.
CREATE TABLE models (
    name          TEXT COLLATE "C" NOT NULL,
    version       TEXT COLLATE "C" NOT NULL, -- first 12 hex digits of sha256
    sha256        TEXT COLLATE "C" NOT NULL,
    file          TEXT COLLATE "C" NOT NULL,
    size          BIGINT NOT NULL,
    signature     TEXT,            -- JSON of understudy.Signature
    metadata      TEXT,            -- JSON of understudy.Metadata
    first_seen_us BIGINT NOT NULL,
    last_seen_us  BIGINT NOT NULL,
    memory_bytes  BIGINT,          -- resident memory added by loading it
    PRIMARY KEY (name, version)
);

-- The one deployment, shared by every replica: which version is primary,
-- the rollback stack and the shadow settings, as JSON of
-- understudy.Deployment. updated_us grows with every save, so that a
-- replica polling it sees each change (see WatchDeployment).
CREATE TABLE deployment (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    state      TEXT    NOT NULL,
    updated_us BIGINT  NOT NULL
);

-- Every lifecycle event.
CREATE TABLE events (
    id      BIGSERIAL PRIMARY KEY,
    time_us BIGINT NOT NULL,
    kind    TEXT COLLATE "C" NOT NULL,
    model   TEXT COLLATE "C" NOT NULL,
    version TEXT,
    actor   TEXT COLLATE "C" NOT NULL, -- admin, watcher or startup
    detail  TEXT,
    replica TEXT COLLATE "C" NOT NULL DEFAULT ''
);
CREATE INDEX events_time ON events (time_us);
CREATE INDEX events_model ON events (model, time_us);

-- +goose Down
DROP TABLE events;
DROP TABLE deployment;
DROP TABLE models;
DROP TABLE shadow_skips;
DROP TABLE shadow_results;
DROP TABLE predictions;
