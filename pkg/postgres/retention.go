package postgres

import (
	"context"
	"errors"
	"math"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/understudy-ml/understudy/pkg/store"
	"github.com/understudy-ml/understudy/pkg/store/rollup"
)

// retain applies retention every RetentionInterval until ctx is done. Each
// replica runs its own; deletes of the same rows by two replicas at once
// are harmless (one of them deletes nothing).
func (db *DB) retain(ctx context.Context) {
	defer close(db.retentionDone)
	tick := time.NewTicker(db.opts.RetentionInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		n, err := db.ApplyRetention(ctx, store.Retention{Days: db.opts.RetainDays, Rows: db.opts.RetainRows, Now: db.opts.Now()})
		if err != nil && ctx.Err() == nil {
			if ok, suppressed := db.retainLog.allow(); ok {
				db.log.Error().Str("err", err.Error()).Int64("deleted", n).Int64("suppressed_errors", suppressed).Msg("store retention failed")
			}
		} else if n > 0 {
			db.log.Debug().Int64("deleted", n).Msg("store retention")
		}
	}
}

// ApplyRetention implements store.Store: it deletes the predictions and
// shadow results older than p.Days or older than the newest p.Rows, skip
// counters (drops by reason included) older than p.Days, and the rollups
// that end before what is kept (their buckets go with them: ON DELETE
// CASCADE). Deferred jobs go with their request's prediction, counted as
// dropped (understudy.DropNoInputs), not in deleted. It deletes in chunks,
// each its own statement, so that no statement holds many locks for long.
func (db *DB) ApplyRetention(ctx context.Context, p store.Retention) (deleted int64, err error) {
	if p.Now.IsZero() {
		p.Now = time.Now()
	}
	type target struct {
		table string
		c     *tableCounters
	}
	targets := []target{{"predictions", &db.preds}, {"shadow_results", &db.shadows}}
	if days := p.Days; days > 0 {
		cutoff := p.Now.Add(-time.Duration(days) * 24 * time.Hour)
		// Before the skip counters, which it adds to.
		if err := db.expireBacklog(ctx, cutoff.UnixMicro()); err != nil {
			return deleted, err
		}
		for _, t := range targets {
			n, err := db.deleteChunks(ctx, `DELETE FROM `+t.table+` WHERE id IN (SELECT id FROM `+t.table+` WHERE time_us < $1 ORDER BY time_us LIMIT $2)`, cutoff.UnixMicro())
			t.c.deleted.Add(n)
			if deleted += n; err != nil {
				return deleted, db.errorf("retention of %s: %w", t.table, err)
			}
		}
		n, err := db.deleteChunks(ctx, `DELETE FROM shadow_skips WHERE (shadow, version, minute) IN
			(SELECT shadow, version, minute FROM shadow_skips WHERE minute < $1 ORDER BY minute LIMIT $2)`, cutoff.Unix()/60)
		if deleted += n; err != nil {
			return deleted, db.errorf("retention of shadow_skips: %w", err)
		}
		// A minute's drops by reason go with its skip counter, whose
		// dropped they break down: not counted again.
		if _, err := db.deleteChunks(ctx, `DELETE FROM shadow_drops WHERE (shadow, version, minute, reason) IN
			(SELECT shadow, version, minute, reason FROM shadow_drops WHERE minute < $1 ORDER BY minute LIMIT $2)`, cutoff.Unix()/60); err != nil {
			return deleted, db.errorf("retention of shadow_drops: %w", err)
		}
		// Rollup rows are not counted: they are not rows handed to the store.
		if err := db.trimRollups(ctx, cutoff.Unix()/60, cutoff.Unix()/60); err != nil {
			return deleted, err
		}
	}
	if keep := p.Rows; keep > 0 {
		for _, t := range targets {
			// The time of the newest row beyond the ones to keep, read from
			// the time index. Rows sharing that microsecond with a kept row
			// are kept too.
			var cutoff int64
			err := db.pool.QueryRow(ctx, `SELECT time_us FROM `+t.table+` ORDER BY time_us DESC LIMIT 1 OFFSET $1`, keep-1).Scan(&cutoff)
			if errors.Is(err, pgx.ErrNoRows) {
				continue
			} else if err != nil {
				return deleted, db.errorf("retention of %s: %w", t.table, err)
			}
			n, err := db.deleteChunks(ctx, `DELETE FROM `+t.table+` WHERE id IN (SELECT id FROM `+t.table+` WHERE time_us < $1 ORDER BY time_us LIMIT $2)`, cutoff)
			t.c.deleted.Add(n)
			if deleted += n; err != nil {
				return deleted, db.errorf("retention of %s: %w", t.table, err)
			}
			if t.table == "predictions" {
				// The jobs whose inputs went with their predictions.
				if err := db.expireBacklog(ctx, cutoff); err != nil {
					return deleted, err
				}
			}
		}
		// The rollups holding the oldest row kept stay whole.
		s, p, err := db.oldestMinutes(ctx)
		if err != nil {
			return deleted, err
		}
		if err := db.trimRollups(ctx, s, p); err != nil {
			return deleted, err
		}
	}
	return deleted, nil
}

// trimRollups deletes the rollups that end by the start of the day holding
// the oldest row kept (rollup.TrimBefore).
func (db *DB) trimRollups(ctx context.Context, oldestMinutes ...int64) error {
	for _, span := range rollup.Spans {
		bound := rollup.TrimBefore(span, oldestMinutes...)
		for _, table := range []string{"shadow_rollups", "confusion_rollups", "primary_rollups"} {
			if _, err := db.pool.Exec(ctx, `DELETE FROM `+table+` WHERE span = $1 AND start < $2`, span, bound); err != nil {
				return db.errorf("retention of %s: %w", table, err)
			}
		}
	}
	// Replicas' minutes go with the days of the rollups, so that the
	// breakdown by replica adds up to the report's totals.
	bound := rollup.TrimBefore(rollup.Spans[len(rollup.Spans)-1], oldestMinutes...)
	if _, err := db.pool.Exec(ctx, `DELETE FROM replica_minutes WHERE minute < $1`, bound); err != nil {
		return db.errorf("retention of replica counts: %w", err)
	}
	return nil
}

// oldestMinutes returns the minute of the oldest stored shadow result and
// prediction, or math.MaxInt64 for an empty table.
func (db *DB) oldestMinutes(ctx context.Context) (shadowMinute, primaryMinute int64, err error) {
	var s, p *int64
	err = db.pool.QueryRow(ctx, `SELECT (SELECT min(time_us) FROM shadow_results), (SELECT min(time_us) FROM predictions)`).Scan(&s, &p)
	if err != nil {
		return 0, 0, db.errorf("retention of rollups: %w", err)
	}
	shadowMinute, primaryMinute = math.MaxInt64, math.MaxInt64
	if s != nil {
		shadowMinute = rollup.MinuteOf(*s)
	}
	if p != nil {
		primaryMinute = rollup.MinuteOf(*p)
	}
	return shadowMinute, primaryMinute, nil
}

// deleteChunks runs query, which takes a bound and a chunk size, until it
// deletes less than a chunk.
func (db *DB) deleteChunks(ctx context.Context, query string, bound int64) (deleted int64, err error) {
	for {
		tag, err := db.pool.Exec(ctx, query, bound, retentionChunk)
		if err != nil {
			return deleted, err
		}
		n := tag.RowsAffected()
		deleted += n
		if n < retentionChunk {
			return deleted, nil
		}
	}
}
