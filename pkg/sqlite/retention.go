package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/understudy-ml/understudy/pkg/store"
)

// retain applies retention every RetentionInterval until ctx is done.
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
				db.log.Error().Err(err).Int64("deleted", n).Int64("suppressed_errors", suppressed).Msg("store retention failed")
			}
		} else if n > 0 {
			db.log.Debug().Int64("deleted", n).Msg("store retention")
		}
	}
}

// ApplyRetention implements store.Store: it deletes the predictions and
// shadow results older than p.Days or older than the newest p.Rows, skip
// counters older than p.Days, and the rollups that end before what is
// kept. Deferred jobs go with their request's prediction, counted as
// dropped (understudy.DropNoInputs); they are not counted in deleted. It deletes in chunks of at most 2000 rows, each its own statement,
// so that queued writes get the write connection in between.
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
			n, err := db.deleteChunks(ctx, `DELETE FROM `+t.table+` WHERE id IN (SELECT id FROM `+t.table+` WHERE time_us < ? ORDER BY time_us LIMIT ?)`, cutoff.UnixMicro())
			t.c.deleted.Add(n)
			if deleted += n; err != nil {
				return deleted, fmt.Errorf("retention of %s: %w", t.table, err)
			}
		}
		n, err := db.deleteChunks(ctx, `DELETE FROM shadow_skips WHERE (shadow, version, minute) IN
			(SELECT shadow, version, minute FROM shadow_skips WHERE minute < ? ORDER BY minute LIMIT ?)`, cutoff.Unix()/60)
		if deleted += n; err != nil {
			return deleted, fmt.Errorf("retention of shadow_skips: %w", err)
		}
		// The counters by reason go with the totals, but are not counted:
		// they break down the skip counters counted above.
		if _, err := db.deleteChunks(ctx, `DELETE FROM shadow_drops WHERE (shadow, version, minute, reason) IN
			(SELECT shadow, version, minute, reason FROM shadow_drops WHERE minute < ? ORDER BY minute LIMIT ?)`, cutoff.Unix()/60); err != nil {
			return deleted, fmt.Errorf("retention of shadow_drops: %w", err)
		}
		// Rollup rows are not counted: they are not rows handed to the store.
		if _, err := db.trimRollups(ctx, cutoff.Unix()/60, cutoff.Unix()/60); err != nil {
			return deleted, err
		}
	}
	if keep := p.Rows; keep > 0 {
		for _, t := range targets {
			// The time of the newest row beyond the ones to keep, read from
			// the narrow time index rather than the wide rows. Rows sharing
			// that microsecond with a kept row are kept too.
			var cutoff int64
			err := db.read.QueryRowContext(ctx, `SELECT time_us FROM `+t.table+` ORDER BY time_us DESC LIMIT 1 OFFSET ?`, keep-1).Scan(&cutoff)
			if errors.Is(err, sql.ErrNoRows) {
				continue
			} else if err != nil {
				return deleted, fmt.Errorf("retention of %s: %w", t.table, err)
			}
			n, err := db.deleteChunks(ctx, `DELETE FROM `+t.table+` WHERE id IN (SELECT id FROM `+t.table+` WHERE time_us < ? ORDER BY time_us LIMIT ?)`, cutoff)
			t.c.deleted.Add(n)
			if deleted += n; err != nil {
				return deleted, fmt.Errorf("retention of %s: %w", t.table, err)
			}
			if t.table == "predictions" {
				// Jobs whose inputs went with their prediction.
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
		if _, err := db.trimRollups(ctx, s, p); err != nil {
			return deleted, err
		}
	}
	return deleted, nil
}

// deleteChunks runs query, which takes a bound and a chunk size, until it
// deletes less than a chunk.
func (db *DB) deleteChunks(ctx context.Context, query string, bound int64) (deleted int64, err error) {
	for {
		res, err := db.write.ExecContext(ctx, query, bound, retentionChunk)
		if err != nil {
			return deleted, err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return deleted, err
		}
		deleted += n
		if n < retentionChunk {
			return deleted, nil
		}
	}
}
