package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
)

// This file inserts predictions and shadow results many rows a statement.
// Each parameter bound through database/sql's Exec is a cgo call of its own
// (13 for a prediction, 24 for a shadow result); a Query binds all of a
// statement's parameters and steps it in one call (go-sqlite3's fused
// path). On the tiny MLP this took the writer's CPU per prediction from
// 6.5 to 3.7 µs (docs/perf/request-cost.md).

// chunkRows is how many rows one multi-row INSERT writes: at most 768
// parameters, far below SQLite's limit of 32,766.
const chunkRows = 32

// insertSQL inserts one row, ignoring a duplicate key.
func insertSQL(head, values, key string) string {
	return head + values + ` ON CONFLICT (` + key + `) DO NOTHING`
}

// chunkSQL inserts chunkRows rows. Unlike insertSQL it fails on a
// duplicate key, which rolls back that statement alone (SQLite's ABORT), so
// that the chunk can be retried row by row to learn which rows were
// duplicates.
func chunkSQL(head, values string) string {
	return head + strings.Repeat(values+", ", chunkRows-1) + values
}

// outcome is what became of one row.
type outcome int

const (
	written outcome = iota
	duplicate
	lost // refused by SQLite; err says why
)

// inserter writes rows of one table: chunk for chunkRows at a time, one
// for the rest and for the rows of a chunk that failed on a row.
type inserter[R any] struct {
	chunk *rawStmt // writeraw.go
	one   *sql.Stmt
	args  func([]any, R) []any
}

// insert writes rows and calls done with each row's outcome, in order, as
// if each had been inserted alone. It fails only when the batch cannot go
// on (done's error, or anything other than a refused row).
//
// tx must be open on conn: the chunks go straight to the driver's
// connection, the rows one by one through tx.
func (ins inserter[R]) insert(ctx context.Context, conn *sql.Conn, tx *sql.Tx, rows []R, buf *[]any, done func(R, outcome, error) error) error {
	var one *sql.Stmt
	args := (*buf)[:0]
	defer func() { clear(args); *buf = args[:0] }()
	for len(rows) > 0 {
		if len(rows) >= chunkRows {
			args = args[:0]
			for _, r := range rows[:chunkRows] {
				args = ins.args(args, r)
			}
			err := ins.chunk.query(conn, args)
			if err == nil {
				for _, r := range rows[:chunkRows] {
					if err := done(r, written, nil); err != nil {
						return err
					}
				}
				rows = rows[chunkRows:]
				continue
			}
			if !rowError(err) {
				return err
			}
		}
		// The rest, or a chunk with a duplicate or a refused row.
		k := min(len(rows), chunkRows)
		if one == nil {
			one = tx.StmtContext(ctx, ins.one)
		}
		for _, r := range rows[:k] {
			args = ins.args(args[:0], r)
			res, err := one.ExecContext(ctx, args...)
			o := written
			switch {
			case err != nil && !rowError(err):
				return err
			case err != nil:
				o = lost
			default:
				if n, _ := res.RowsAffected(); n == 0 {
					o = duplicate
				}
			}
			if err := done(r, o, err); err != nil {
				return err
			}
		}
		rows = rows[k:]
	}
	return nil
}

const predHead = `INSERT INTO predictions (request_id, time_us, model, version, inputs, inputs_sha256, inputs_size, outputs, latency_us, status, error, cpu_us, served_by, replica)
	VALUES `

// predValues is one prediction's placeholders; the replica id is the same
// for every row, so it is part of the statement rather than a parameter.
func predValues(replica string) string {
	return "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, " + replica + ")"
}

// predArgs and shadowArgs give database/sql values it passes on as they
// are (int64, float64, string, []byte, nil): an int or a sql.Null* type
// goes through its reflection-based converter, once per parameter. Only
// the writer's goroutine calls them.
func (db *DB) predArgs(args []any, r *predRow) []any {
	b := &db.boxes
	return append(args, r.id, r.timeUS, b.of(r.model), b.of(r.version), r.inputs, r.inputsSHA256, int64(r.inputsSize), r.outputs, r.latencyUS, b.of(r.status), r.err, argInt(r.cpuUS), b.of(r.servedBy))
}

func argInt(v sql.NullInt64) any {
	if !v.Valid {
		return nil
	}
	return v.Int64
}

func argFloat(v sql.NullFloat64) any {
	if !v.Valid {
		return nil
	}
	return v.Float64
}

const shadowHead = `INSERT INTO shadow_results (request_id, time_us, shadow, version, primary_model, primary_version, outputs, latency_us, status, error,
		agreement, primary_class, shadow_class, max_abs_diff, mean_abs_diff, comparison,
		sum_sq_diff, elements, primary_score, shadow_score, cpu_us, primary_latency_us, served_by, origin, replica)
	VALUES `

func shadowValues(replica string) string {
	return "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, " + replica + ")"
}

func shadowArgs(args []any, r *shadowRow) []any {
	return append(args, r.id, r.timeUS, r.shadow, r.version, r.primary, r.primaryVersion, r.outputs, r.latencyUS, r.status, r.err,
		argFloat(r.agreement), argInt(r.primaryClass), argInt(r.shadowClass), argFloat(r.maxAbsDiff), argFloat(r.meanAbsDiff), r.comparison,
		argFloat(r.sumSq), argInt(r.elements), argFloat(r.primaryScore), argFloat(r.shadowScore), argInt(r.cpuUS), argInt(r.primaryLatencyUS), r.servedBy, r.origin)
}

// prepareInserts prepares the row and chunk statements of both tables.
func (db *DB) prepareInserts(ctx context.Context, replica string) error {
	// The chunk statements are prepared on first use, on the connection
	// they run on.
	db.insPreds.chunk = &rawStmt{sql: chunkSQL(predHead, predValues(replica))}
	db.insShadows.chunk = &rawStmt{sql: chunkSQL(shadowHead, shadowValues(replica))}
	for _, s := range []struct {
		stmt **sql.Stmt
		sql  string
	}{
		{&db.insPreds.one, insertSQL(predHead, predValues(replica), "request_id")},
		{&db.insShadows.one, insertSQL(shadowHead, shadowValues(replica), "request_id, shadow, version")},
	} {
		var err error
		if *s.stmt, err = db.write.PrepareContext(ctx, s.sql); err != nil {
			return fmt.Errorf("prepare: %w", err)
		}
	}
	db.insPreds.args, db.insShadows.args = db.predArgs, shadowArgs
	return nil
}

func (ins inserter[R]) close() error {
	var errs []error
	if ins.chunk != nil {
		errs = append(errs, ins.chunk.close())
	}
	if ins.one != nil {
		errs = append(errs, ins.one.Close())
	}
	return errors.Join(errs...)
}
