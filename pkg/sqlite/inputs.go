package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/understudy-ml/understudy/pkg/store"
	"github.com/understudy-ml/understudy/pkg/store/rollup"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// This file reads the stored predictions that backfills and backtests
// replay (understudy.History). The reads take a read transaction of the
// pool, which never blocks the writer (WAL).

// storedInputColumns are the columns scanInput reads, from predictions p;
// paired and the tensors come last.
const storedInputColumns = `p.request_id, p.time_us, p.model, p.version, p.latency_us, p.served_by, p.label`

// StoredInputs implements understudy.History.
func (db *DB) StoredInputs(ctx context.Context, ids []string) (map[string]*understudy.StoredInput, error) {
	out := make(map[string]*understudy.StoredInput, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	tx, err := db.read.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("read stored inputs: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	for chunk := range slices.Chunk(ids, 500) {
		args := make([]any, len(chunk))
		for i, id := range chunk {
			args[i] = id
		}
		err := eachInput(ctx, tx, `SELECT `+storedInputColumns+`, 0, p.inputs, p.outputs FROM predictions p
			WHERE p.request_id IN (?`+strings.Repeat(", ?", len(chunk)-1)+`)`, args, func(in *understudy.StoredInput) {
			out[in.RequestID] = in
		})
		if err != nil {
			return nil, fmt.Errorf("read stored inputs: %w", err)
		}
	}
	return out, nil
}

// RecentInputs implements understudy.History. It walks the time index of
// predictions backwards from q.Before; a request already paired with
// q.PairedWith is found on the unique index of shadow_results, and its
// tensors are neither read nor decoded.
func (db *DB) RecentInputs(ctx context.Context, q understudy.InputQuery) ([]*understudy.StoredInput, error) {
	if q.Limit <= 0 {
		return nil, nil
	}
	lo, hi := rollup.MicroRange(q.From, q.Before)
	cols := storedInputColumns + `, 0, p.inputs, p.outputs`
	join := ""
	var args []any
	if q.PairedWith.Name != "" {
		cols = storedInputColumns + `, s.id IS NOT NULL, CASE WHEN s.id IS NULL THEN p.inputs END, CASE WHEN s.id IS NULL THEN p.outputs END`
		join = ` LEFT JOIN shadow_results s ON s.request_id = p.request_id AND s.shadow = ? AND s.version = ?`
		args = append(args, q.PairedWith.Name, q.PairedWith.Version)
	}
	// Rows at Before itself come before BeforeID only (a page ends inside
	// a run of equal times); an empty BeforeID excludes them all.
	args = append(args, q.Model, lo, hi, hi, q.BeforeID, q.Limit)
	tx, err := db.read.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("read recent inputs: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	var out []*understudy.StoredInput
	err = eachInput(ctx, tx, `SELECT `+cols+` FROM predictions p`+join+`
		WHERE p.model = ? AND p.status = 'ok' AND p.time_us >= ? AND p.time_us <= ? AND (p.time_us < ? OR p.request_id < ?)
		ORDER BY p.time_us DESC, p.request_id DESC LIMIT ?`, args, func(in *understudy.StoredInput) {
		out = append(out, in)
	})
	if err != nil {
		return nil, fmt.Errorf("read recent inputs of %q: %w", q.Model, err)
	}
	return out, nil
}

// eachInput runs query, whose columns are storedInputColumns, paired,
// inputs and outputs, and calls fn with each row decoded.
func eachInput(ctx context.Context, tx *sql.Tx, query string, args []any, fn func(*understudy.StoredInput)) error {
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			in                understudy.StoredInput
			timeUS, latencyUS int64
			inputs, outputs   []byte
			label             sql.NullFloat64
		)
		if err := rows.Scan(&in.RequestID, &timeUS, &in.Model, &in.Version, &latencyUS, &in.ServedBy, &label, &in.Paired, &inputs, &outputs); err != nil {
			return err
		}
		if label.Valid {
			in.Label = &label.Float64
		}
		in.Time = time.UnixMicro(timeUS)
		in.Latency = time.Duration(latencyUS) * time.Microsecond
		// Either stored form (binary since migration 00004, JSON before).
		if inputs != nil {
			if in.Inputs, err = store.DecodeTensors(inputs); err != nil {
				return fmt.Errorf("request %q inputs: %w", in.RequestID, err)
			}
		}
		if outputs != nil {
			if in.Outputs, err = store.DecodeTensors(outputs); err != nil {
				return fmt.Errorf("request %q outputs: %w", in.RequestID, err)
			}
		}
		fn(&in)
	}
	return rows.Err()
}
