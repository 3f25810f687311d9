package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/understudy-ml/understudy/pkg/store"
	"github.com/understudy-ml/understudy/pkg/store/rollup"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// This file is the backlog of deferred shadow jobs and the counters of the
// jobs that did not run live (understudy.History, migration 00007). Defer
// and CountDrops are queued like CountSkips (write.go); the rest reads or
// writes directly, off the request path.

const (
	// upsertSkipSQL adds to a shadow version's counters of one minute.
	upsertSkipSQL = `INSERT INTO shadow_skips (shadow, version, minute, sampled_out, deferred, dropped) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (shadow, version, minute) DO UPDATE SET sampled_out = sampled_out + excluded.sampled_out,
			deferred = deferred + excluded.deferred, dropped = dropped + excluded.dropped`
	// upsertDropSQL adds to the jobs dropped for one reason in one minute;
	// the same jobs are added to shadow_skips.dropped in the same
	// transaction.
	upsertDropSQL = `INSERT INTO shadow_drops (shadow, version, minute, reason, n) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (shadow, version, minute, reason) DO UPDATE SET n = n + excluded.n`
)

// Deferred implements understudy.History.
func (db *DB) Deferred(ctx context.Context, limit int) ([]understudy.DeferredJob, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := db.read.QueryContext(ctx, `SELECT request_id, shadow, version, time_us FROM shadow_backlog
		ORDER BY time_us, request_id, shadow, version LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("read backlog: %w", err)
	}
	defer rows.Close()
	var out []understudy.DeferredJob
	for rows.Next() {
		var j understudy.DeferredJob
		var us int64
		if err := rows.Scan(&j.RequestID, &j.Shadow, &j.Version, &us); err != nil {
			return nil, fmt.Errorf("read backlog: %w", err)
		}
		j.Time = time.UnixMicro(us)
		out = append(out, j)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read backlog: %w", err)
	}
	return out, nil
}

// PendingJobs implements understudy.History.
func (db *DB) PendingJobs(ctx context.Context) (n int64, err error) {
	if err := db.read.QueryRowContext(ctx, `SELECT count(*) FROM shadow_backlog`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count backlog: %w", err)
	}
	return n, nil
}

// DropDeferred implements understudy.History. It takes the write
// connection between two batches of the writer, as SetLabels does.
func (db *DB) DropDeferred(ctx context.Context, jobs []understudy.DeferredJob, reason string) error {
	if len(jobs) == 0 {
		return nil
	}
	tx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("drop deferred jobs: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := dropJobs(ctx, tx, jobs, reason); err != nil {
		return fmt.Errorf("drop deferred jobs: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("drop deferred jobs: %w", err)
	}
	return nil
}

// dropJobs deletes the pending ones of jobs from the backlog and counts
// each as dropped for reason at its request's minute, as stored, inside
// tx. It returns how many were pending.
func dropJobs(ctx context.Context, tx *sql.Tx, jobs []understudy.DeferredJob, reason string) (int64, error) {
	del, err := tx.PrepareContext(ctx, `DELETE FROM shadow_backlog WHERE request_id = ? AND shadow = ? AND version = ? RETURNING time_us`)
	if err != nil {
		return 0, err
	}
	defer del.Close()
	counts := map[skipKey]int64{}
	var n int64
	for _, j := range jobs {
		var us int64
		err := del.QueryRowContext(ctx, j.RequestID, j.Shadow, j.Version).Scan(&us)
		switch {
		case err == nil:
			counts[skipKey{j.Shadow, j.Version, rollup.MinuteOf(us)}]++
			n++
		case !errors.Is(err, sql.ErrNoRows): // none: no longer pending
			return 0, err
		}
	}
	for k, c := range counts {
		if _, err := tx.ExecContext(ctx, upsertSkipSQL, k.shadow, k.version, k.minute, 0, 0, c); err != nil {
			return 0, err
		}
		if _, err := tx.ExecContext(ctx, upsertDropSQL, k.shadow, k.version, k.minute, reason, c); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// expireBacklog deletes, in chunks, the jobs whose request is older than
// cutoffUS: retention deleted or is deleting their inputs. Each is counted
// dropped for want of inputs, so that a minute's deferred jobs still add
// up to those that ran, are pending and were dropped.
func (db *DB) expireBacklog(ctx context.Context, cutoffUS int64) error {
	for {
		n, err := db.expireChunk(ctx, cutoffUS)
		if err != nil {
			return fmt.Errorf("retention of shadow_backlog: %w", err)
		}
		if n < retentionChunk {
			return nil
		}
	}
}

func (db *DB) expireChunk(ctx context.Context, cutoffUS int64) (int, error) {
	tx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer func() { _ = tx.Rollback() }()
	rows, err := tx.QueryContext(ctx, `SELECT request_id, shadow, version FROM shadow_backlog
		WHERE time_us < ? ORDER BY time_us LIMIT ?`, cutoffUS, retentionChunk)
	if err != nil {
		return 0, err
	}
	var jobs []understudy.DeferredJob
	for rows.Next() {
		var j understudy.DeferredJob
		if err := rows.Scan(&j.RequestID, &j.Shadow, &j.Version); err != nil {
			rows.Close()
			return 0, err
		}
		jobs = append(jobs, j)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	if _, err := dropJobs(ctx, tx, jobs, understudy.DropNoInputs); err != nil {
		return 0, err
	}
	return len(jobs), tx.Commit()
}

// SkipCounts implements store.Snapshot: the counters, whatever the view's
// origin, and the dropped jobs by reason.
func (s *snapshot) SkipCounts(ctx context.Context, shadow, version string, from, to time.Time) (store.Skips, error) {
	lo, hi := rollup.MinuteRange(from, to)
	sk := store.Skips{Reasons: map[string]int64{}}
	err := s.tx.QueryRowContext(ctx, `SELECT coalesce(sum(sampled_out), 0), coalesce(sum(deferred), 0), coalesce(sum(dropped), 0) FROM shadow_skips
		WHERE shadow = ? AND version = ? AND minute >= ? AND minute < ?`, shadow, version, lo, hi).Scan(&sk.SampledOut, &sk.Deferred, &sk.Dropped)
	if err != nil {
		return store.Skips{}, fmt.Errorf("read skips of %q: %w", shadow, err)
	}
	if sk.Dropped == 0 {
		return sk, nil
	}
	err = s.each(ctx, `SELECT reason, sum(n) FROM shadow_drops WHERE shadow = ? AND version = ? AND minute >= ? AND minute < ?
		GROUP BY reason`, []any{shadow, version, lo, hi}, func(rows *sql.Rows) error {
		var reason string
		var n int64
		if err := rows.Scan(&reason, &n); err != nil {
			return err
		}
		if n != 0 {
			sk.Reasons[reason] = n
		}
		return nil
	})
	if err != nil {
		return store.Skips{}, fmt.Errorf("read drops of %q: %w", shadow, err)
	}
	return sk, nil
}

// Pending implements store.Snapshot.
func (s *snapshot) Pending(ctx context.Context, shadow, version string, from, to time.Time) (n int64, err error) {
	lo, hi := rollup.MicroRange(from, to)
	err = s.tx.QueryRowContext(ctx, `SELECT count(*) FROM shadow_backlog WHERE shadow = ? AND version = ? AND time_us >= ? AND time_us < ?`,
		shadow, version, lo, hi).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count pending jobs of %q: %w", shadow, err)
	}
	return n, nil
}
