-- Tensors stored in a compact binary form (issue 18). No column changes its
-- declared type: SQLite keeps a BLOB as a BLOB in a column of TEXT affinity,
-- so the columns below hold either form, told apart by their first byte.
--
-- predictions.inputs, predictions.outputs, shadow_results.outputs:
--   rows written from this migration on hold BLOBs in the binary layout
--   documented at store.StoredTensorsV1 (pkg/store/codec.go): first byte
--   0xB1, then the tensors by name, each with its element type, shape and
--   little-endian data. Older rows keep their JSON text, which starts with
--   '{'. store.DecodeTensors and store.TensorsJSON read both; readers hand
--   the JSON form to the report, the CSV export and the request page.
-- predictions.inputs_sha256, predictions.inputs_size:
--   when the inputs are stored, the writer no longer hashes them: it writes
--   '' and the BLOB's length, and readers compute the sha256 and size of the
--   JSON form from the stored copy (store.StoredInputs). Over --input-cap,
--   both still describe the JSON form, as before. Inputs are stored when
--   either form fits the cap, so everything stored before still is.
-- shadow_results.comparison stays JSON text.
--
-- Going down leaves the binary rows in place: a build older than this
-- migration cannot decode them.

-- +goose Up
SELECT 1;

-- +goose Down
SELECT 1;
