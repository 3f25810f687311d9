package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/mattn/go-sqlite3"
	"golang.org/x/sys/unix"

	"github.com/understudy-ml/understudy/pkg/store/rollup"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// This file is the writer's SQL: a batch's statements, and the WAL checkpoint.

// checkpoint copies the write-ahead log into the database as far as
// readers allow, without waiting for them, as SQLite's automatic
// checkpoints do.
func (db *DB) checkpoint() {
	var busy, logFrames, done int
	err := db.write.QueryRow("PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &logFrames, &done)
	if err == nil {
		db.checkpoints.Add(1)
		db.checkpointTID.Store(int64(unix.Gettid()))
		return
	}
	if ok, suppressed := db.checkpointLog.allow(); ok {
		db.log.Warn().Err(err).Int64("suppressed", suppressed).Msg("checkpoint of the write-ahead log failed; the log grows until one succeeds")
	}
}

// rowError reports whether err concerns one row only, so that the rest of
// its batch can still be committed. Anything else (disk full, I/O error,
// read-only database, busy) fails the whole batch.
func rowError(err error) bool {
	var e sqlite3.Error
	if !errors.As(err, &e) {
		return false
	}
	switch e.Code {
	case sqlite3.ErrConstraint, sqlite3.ErrTooBig, sqlite3.ErrMismatch, sqlite3.ErrRange:
		return true
	}
	return false
}

func (db *DB) exec(b *batch, n *batchCounts) (err error) {
	ctx := context.Background()
	// A connection of its own for the transaction, so that the chunk
	// inserts can reach the driver's connection under it (writeraw.go).
	conn, err := db.write.Conn(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer conn.Close()
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	// A no-op after Commit; after a failure SQLite may have rolled back
	// already, so its error says nothing.
	defer func() { _ = tx.Rollback() }()
	// tally counts a row's outcome, logs a duplicate or a lost row, and
	// reports whether the row was written.
	tally := func(c *rowCounts, o outcome, table, id string, err error) bool {
		switch o {
		case duplicate:
			c.duplicate++
			if ok, suppressed := db.dupLog.allow(); ok {
				db.log.Warn().Str("table", table).Str("request_id", id).Int64("suppressed", suppressed).
					Msg("duplicate request id ignored")
			}
		case lost:
			c.lost++
			if ok, suppressed := db.failLog.allow(); ok {
				db.log.Error().Err(err).Str("table", table).Str("request_id", id).Int64("suppressed_errors", suppressed).
					Msg("store could not write a row; row lost")
			}
		default:
			c.written++
		}
		return o == written
	}
	ru := rollup.NewBatch(db.opts.Replica)
	err = db.insPreds.insert(ctx, conn, tx, db.predRows(b.preds), &db.rowArgs, func(r *predRow, o outcome, err error) error {
		if tally(&n.preds, o, "predictions", r.id, err) {
			ru.AddPrediction(&r.roll)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("insert predictions: %w", err)
	}
	var del *sql.Stmt
	err = db.insShadows.insert(ctx, conn, tx, b.shadows, &db.rowArgs, func(r *shadowRow, o outcome, err error) error {
		if tally(&n.shadows, o, "shadow_results", r.id, err) {
			ru.AddShadow(&r.roll)
		}
		// A backfill's job is done once its result is stored, by this row
		// or an earlier one: a duplicate must not leave it pending to run
		// again.
		if o != lost && r.origin == understudy.OriginBackfill {
			if del == nil {
				del = tx.StmtContext(ctx, db.delBacklog)
			}
			if _, err := del.ExecContext(ctx, r.id, r.shadow, r.version); err != nil {
				return fmt.Errorf("delete backfilled job: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("insert shadow results: %w", err)
	}
	deferred, err := db.execDefers(ctx, tx, b.defers, n)
	if err != nil {
		return err
	}
	if len(b.skips)+len(deferred) > 0 {
		if err := execSkips(ctx, tx.StmtContext(ctx, db.upsertSkip), b.skips, deferred); err != nil {
			return err
		}
	}
	if len(b.drops) > 0 {
		st := tx.StmtContext(ctx, db.upsertDrop)
		for k, c := range b.drops {
			if _, err := st.ExecContext(ctx, k.shadow, k.version, k.minute, k.reason, c); err != nil {
				return fmt.Errorf("upsert drops: %w", err)
			}
		}
	}
	if err := writeRollups(ctx, tx, &db.rollup, ru); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// execDefers adds the jobs of defers to the backlog and returns, per
// shadow version and minute, how many were new: a job already pending is
// not deferred twice.
func (db *DB) execDefers(ctx context.Context, tx *sql.Tx, defers []*deferRow, n *batchCounts) (map[skipKey]int64, error) {
	if len(defers) == 0 {
		return nil, nil
	}
	st := tx.StmtContext(ctx, db.insBacklog)
	added := map[skipKey]int64{}
	for _, r := range defers {
		res, err := st.ExecContext(ctx, r.id, r.shadow, r.version, r.timeUS, r.deferredUS)
		if err != nil {
			return nil, fmt.Errorf("defer job: %w", err)
		}
		if k, _ := res.RowsAffected(); k == 0 {
			n.defers.duplicate++
			continue
		}
		n.defers.written++
		added[skipKey{r.shadow, r.version, rollup.MinuteOf(r.timeUS)}]++
	}
	return added, nil
}

// execSkips adds the skip counters and the newly deferred jobs to
// shadow_skips, one upsert per shadow version and minute.
func execSkips(ctx context.Context, st *sql.Stmt, skips map[skipKey]*skipRow, deferred map[skipKey]int64) error {
	for k, r := range skips {
		if _, err := st.ExecContext(ctx, k.shadow, k.version, k.minute, r.sampledOut, deferred[k], r.dropped); err != nil {
			return fmt.Errorf("upsert skips: %w", err)
		}
	}
	for k, d := range deferred {
		if _, ok := skips[k]; ok {
			continue
		}
		if _, err := st.ExecContext(ctx, k.shadow, k.version, k.minute, 0, d, 0); err != nil {
			return fmt.Errorf("upsert skips: %w", err)
		}
	}
	return nil
}
