-- Times are unix microseconds (INTEGER) unless the column says otherwise.
-- Tensor maps are JSON: {"name": {"dtype": "float32", "shape": [1, 4], "data": [[...]]}}.

-- +goose Up
-- Every answer of the primary model.
CREATE TABLE predictions (
    id            INTEGER PRIMARY KEY,
    request_id    TEXT    NOT NULL,
    time_us       INTEGER NOT NULL,
    model         TEXT    NOT NULL,
    version       TEXT    NOT NULL,
    inputs        TEXT,              -- NULL when inputs_size is over the input cap
    inputs_sha256 TEXT    NOT NULL,  -- hex sha256 of the inputs JSON, stored or not
    inputs_size   INTEGER NOT NULL,  -- bytes of the inputs JSON
    outputs       TEXT,              -- NULL when the run failed
    latency_us    INTEGER NOT NULL,
    status        TEXT    NOT NULL,  -- ok or error
    error         TEXT,
    label         REAL,              -- ground truth, set later by POST /labels
    label_time_us INTEGER
);
CREATE UNIQUE INDEX predictions_request_id ON predictions (request_id);
CREATE INDEX predictions_time ON predictions (time_us);

-- Every shadow answer with its comparison to the primary. No foreign key to
-- predictions: a lost prediction row must not cost the shadow row.
CREATE TABLE shadow_results (
    id              INTEGER PRIMARY KEY,
    request_id      TEXT    NOT NULL,
    time_us         INTEGER NOT NULL, -- when the shadow run finished
    shadow          TEXT    NOT NULL,
    version         TEXT    NOT NULL,
    primary_model   TEXT    NOT NULL,
    primary_version TEXT    NOT NULL,
    outputs         TEXT,             -- NULL unless status is ok
    latency_us      INTEGER NOT NULL,
    status          TEXT    NOT NULL, -- ok, error or timeout
    error           TEXT,
    agreement       REAL,             -- fraction of rows whose class agrees
    primary_class   INTEGER,          -- first row's class, for confusion matrices
    shadow_class    INTEGER,
    max_abs_diff    REAL,
    mean_abs_diff   REAL,
    comparison      TEXT              -- JSON of understudy.Comparison
);
CREATE UNIQUE INDEX shadow_results_request_id ON shadow_results (request_id, shadow, version);
CREATE INDEX shadow_results_shadow_time ON shadow_results (shadow, version, time_us);
CREATE INDEX shadow_results_time ON shadow_results (time_us);

-- Jobs a shadow did not run, per minute.
CREATE TABLE shadow_skips (
    shadow      TEXT    NOT NULL,
    version     TEXT    NOT NULL,
    minute      INTEGER NOT NULL, -- unix seconds / 60
    sampled_out INTEGER NOT NULL DEFAULT 0,
    dropped     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (shadow, version, minute)
) WITHOUT ROWID;
CREATE INDEX shadow_skips_minute ON shadow_skips (minute);

-- Every model version the server has seen.
CREATE TABLE models (
    name          TEXT    NOT NULL,
    version       TEXT    NOT NULL, -- first 12 hex digits of sha256
    sha256        TEXT    NOT NULL,
    file          TEXT    NOT NULL,
    size          INTEGER NOT NULL,
    signature     TEXT,             -- JSON of understudy.Signature
    metadata      TEXT,             -- JSON of understudy.Metadata
    first_seen_us INTEGER NOT NULL,
    last_seen_us  INTEGER NOT NULL,
    PRIMARY KEY (name, version)
);

-- +goose Down
DROP TABLE models;
DROP TABLE shadow_skips;
DROP TABLE shadow_results;
DROP TABLE predictions;
