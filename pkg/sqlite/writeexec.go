package sqlite

import (
	"context"
	"errors"
	"fmt"

	"github.com/mattn/go-sqlite3"
	"golang.org/x/sys/unix"

	"github.com/understudy-ml/understudy/pkg/store/rollup"
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
	tx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	// A no-op after Commit; after a failure SQLite may have rolled back
	// already, so its error says nothing.
	defer func() { _ = tx.Rollback() }()
	rowFailed := func(table, id string, err error) {
		if ok, suppressed := db.failLog.allow(); ok {
			db.log.Error().Err(err).Str("table", table).Str("request_id", id).Int64("suppressed_errors", suppressed).
				Msg("store could not write a row; row lost")
		}
	}
	dup := func(table, id string) {
		if ok, suppressed := db.dupLog.allow(); ok {
			db.log.Warn().Str("table", table).Str("request_id", id).Int64("suppressed", suppressed).
				Msg("duplicate request id ignored")
		}
	}
	ru := rollup.NewBatch(db.opts.Replica)
	if len(b.preds) > 0 {
		st := tx.StmtContext(ctx, db.insPred)
		for _, r := range b.preds {
			res, err := st.ExecContext(ctx, r.id, r.timeUS, r.model, r.version, r.inputs, r.inputsSHA256, r.inputsSize, r.outputs, r.latencyUS, r.status, r.err, r.cpuUS, r.servedBy)
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
	}
	if len(b.shadows) > 0 {
		st := tx.StmtContext(ctx, db.insShadow)
		for _, r := range b.shadows {
			res, err := st.ExecContext(ctx, r.id, r.timeUS, r.shadow, r.version, r.primary, r.primaryVersion, r.outputs, r.latencyUS, r.status, r.err,
				r.agreement, r.primaryClass, r.shadowClass, r.maxAbsDiff, r.meanAbsDiff, r.comparison,
				r.sumSq, r.elements, r.primaryScore, r.shadowScore, r.cpuUS, r.primaryLatencyUS, r.servedBy)
			if err != nil {
				if !rowError(err) {
					return fmt.Errorf("insert shadow result: %w", err)
				}
				n.shadows.lost++
				rowFailed("shadow_results", r.id, err)
			} else if k, _ := res.RowsAffected(); k == 0 {
				n.shadows.duplicate++
				dup("shadow_results", r.id)
			} else {
				n.shadows.written++
				ru.AddShadow(&r.roll)
			}
		}
	}
	if len(b.skips) > 0 {
		st := tx.StmtContext(ctx, db.upsertSkip)
		for _, r := range b.skips {
			if _, err := st.ExecContext(ctx, r.shadow, r.version, r.minute, r.sampledOut, r.dropped); err != nil {
				return fmt.Errorf("upsert skips: %w", err)
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
