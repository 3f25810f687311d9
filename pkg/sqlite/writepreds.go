package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/understudy-ml/understudy/pkg/store/rollup"
)

// predChunk is how many predictions one multi-row INSERT writes. Each
// parameter bound through database/sql's Exec is a cgo call of its own
// (13 per row); a Query binds all of a statement's parameters and steps it
// in one call. 32 rows are 416 parameters, far below SQLite's limit of
// 32,766.
const predChunk = 32

const predColumns = `INSERT INTO predictions (request_id, time_us, model, version, inputs, inputs_sha256, inputs_size, outputs, latency_us, status, error, cpu_us, served_by, replica)
	VALUES `

// predValues is one row's placeholders; the replica id is the same for every
// row, so it is part of the statement rather than one more parameter.
func predValues(replica string) string {
	return "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, " + replica + ")"
}

// insPredSQL inserts one prediction, ignoring a duplicate request id.
func insPredSQL(replica string) string {
	return predColumns + predValues(replica) + ` ON CONFLICT (request_id) DO NOTHING`
}

// insPredChunkSQL inserts predChunk predictions. Unlike insPredSQL it fails
// on a duplicate request id, which rolls back the statement alone (SQLite's
// ABORT), so that the chunk can be retried row by row to learn which rows
// were duplicates.
func insPredChunkSQL(replica string) string {
	v := predValues(replica)
	return predColumns + strings.Repeat(v+", ", predChunk-1) + v
}

func appendPredArgs(args []any, r *predRow) []any {
	return append(args, r.id, r.timeUS, r.model, r.version, r.inputs, r.inputsSHA256, r.inputsSize, r.outputs, r.latencyUS, r.status, r.err, r.cpuUS, r.servedBy)
}

// execPreds inserts preds in chunks of predChunk rows, and row by row for
// the rest and for any chunk that fails on a row: a duplicate, or a row
// SQLite refuses. Every row ends up written, duplicate or lost, as if it had
// been inserted alone.
func (db *DB) execPreds(ctx context.Context, tx *sql.Tx, preds []*predRow, n *batchCounts, ru *rollup.Batch,
	rowFailed func(table, id string, err error), dup func(table, id string)) error {
	var chunk, one *sql.Stmt
	args := db.predArgs[:0]
	defer func() { clear(args); db.predArgs = args[:0] }()
	for len(preds) > 0 {
		if len(preds) >= predChunk {
			if chunk == nil {
				chunk = tx.StmtContext(ctx, db.insPredChunk)
			}
			args = args[:0]
			for _, r := range preds[:predChunk] {
				args = appendPredArgs(args, r)
			}
			rows, err := chunk.QueryContext(ctx, args...)
			if err == nil {
				err = rows.Close()
			}
			if err == nil {
				for _, r := range preds[:predChunk] {
					ru.AddPrediction(&r.roll)
				}
				n.preds.written += predChunk
				preds = preds[predChunk:]
				continue
			}
			if !rowError(err) {
				return fmt.Errorf("insert predictions: %w", err)
			}
		}
		// The rest, or a chunk with a duplicate or a refused row.
		k := min(len(preds), predChunk)
		if one == nil {
			one = tx.StmtContext(ctx, db.insPred)
		}
		for _, r := range preds[:k] {
			args = appendPredArgs(args[:0], r)
			res, err := one.ExecContext(ctx, args...)
			if err != nil {
				if !rowError(err) {
					return fmt.Errorf("insert prediction: %w", err)
				}
				n.preds.lost++
				rowFailed("predictions", r.id, err)
			} else if k, _ := res.RowsAffected(); k == 0 {
				n.preds.duplicate++
				dup("predictions", r.id)
			} else {
				n.preds.written++
				ru.AddPrediction(&r.roll)
			}
		}
		preds = preds[k:]
	}
	return nil
}
