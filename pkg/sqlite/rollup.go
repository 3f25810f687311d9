package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"math"

	"github.com/understudy-ml/understudy/pkg/store"
	"github.com/understudy-ml/understudy/pkg/store/rollup"
)

// The writer keeps rollups (shadow_rollups, confusion_rollups and
// primary_rollups) in the same transaction as the rows they summarise, so
// that they never disagree with the committed rows. Shadow and confusion
// rollups are kept per origin (migration 00007). store/rollup counts each
// row at every span; this file holds the statements that add a batch's
// counts to the stored ones.

const (
	// upsertShadowRollup adds a batch's counts to a shadow_rollups row. The
	// histograms arrive already merged with the stored ones.
	upsertShadowRollup = `INSERT INTO shadow_rollups (shadow, version, span, start, primary_model, primary_version, origin,
			pairs, ok, errors, timeouts, class_pairs, disagree_pairs, class_rows, agree_rows,
			float_pairs, elements, sum_abs, sum_sq, max_abs, diff_hist, latency_hist, primary_latency_hist, cpu_us, cpu_runs)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (shadow, version, span, start, primary_model, primary_version, origin) DO UPDATE SET
			pairs = pairs + excluded.pairs, ok = ok + excluded.ok, errors = errors + excluded.errors,
			timeouts = timeouts + excluded.timeouts, class_pairs = class_pairs + excluded.class_pairs,
			disagree_pairs = disagree_pairs + excluded.disagree_pairs, class_rows = class_rows + excluded.class_rows,
			agree_rows = agree_rows + excluded.agree_rows, float_pairs = float_pairs + excluded.float_pairs,
			elements = elements + excluded.elements, sum_abs = sum_abs + excluded.sum_abs, sum_sq = sum_sq + excluded.sum_sq,
			max_abs = max(coalesce(max_abs, excluded.max_abs), coalesce(excluded.max_abs, max_abs)),
			diff_hist = excluded.diff_hist, latency_hist = excluded.latency_hist,
			primary_latency_hist = excluded.primary_latency_hist,
			cpu_us = cpu_us + excluded.cpu_us, cpu_runs = cpu_runs + excluded.cpu_runs`
	selectShadowRollupHists = `SELECT diff_hist, latency_hist, primary_latency_hist FROM shadow_rollups
		WHERE shadow = ? AND version = ? AND span = ? AND start = ? AND primary_model = ? AND primary_version = ? AND origin = ?`
	upsertConfusion = `INSERT INTO confusion_rollups (shadow, version, span, start, primary_class, shadow_class, origin, n) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (shadow, version, span, start, primary_class, shadow_class, origin) DO UPDATE SET n = n + excluded.n`
	upsertPrimaryRollup = `INSERT INTO primary_rollups (span, start, model, version, requests, errors, cpu_us, cpu_runs) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (span, start, model, version) DO UPDATE SET requests = requests + excluded.requests,
			errors = errors + excluded.errors, cpu_us = cpu_us + excluded.cpu_us, cpu_runs = cpu_runs + excluded.cpu_runs`
)

// rollupStmts are the writer's prepared rollup statements.
type rollupStmts struct {
	shadow, shadowHists, confusion, primary *sql.Stmt
}

func (s *rollupStmts) prepare(ctx context.Context, db *sql.DB) error {
	for _, p := range []struct {
		stmt **sql.Stmt
		sql  string
	}{
		{&s.shadow, upsertShadowRollup},
		{&s.shadowHists, selectShadowRollupHists},
		{&s.confusion, upsertConfusion},
		{&s.primary, upsertPrimaryRollup},
	} {
		var err error
		if *p.stmt, err = db.PrepareContext(ctx, p.sql); err != nil {
			return fmt.Errorf("prepare rollups: %w", err)
		}
	}
	return nil
}

func (s *rollupStmts) close() error {
	var err error
	for _, st := range []*sql.Stmt{s.shadow, s.shadowHists, s.confusion, s.primary} {
		if st != nil {
			if e := st.Close(); err == nil {
				err = e
			}
		}
	}
	return err
}

// writeRollups adds the batch's rollups to the stored ones, inside tx.
func writeRollups(ctx context.Context, tx *sql.Tx, st *rollupStmts, ru *rollup.Batch) error {
	if len(ru.Shadows) > 0 {
		sel, up := tx.StmtContext(ctx, st.shadowHists), tx.StmtContext(ctx, st.shadow)
		for k, d := range ru.Shadows {
			var diff, lat, plat []byte
			err := sel.QueryRowContext(ctx, k.Shadow, k.Version, k.Span, k.Start, k.Primary, k.PrimaryVersion, k.Origin).Scan(&diff, &lat, &plat)
			if err != nil && err != sql.ErrNoRows {
				return fmt.Errorf("read shadow rollup: %w", err)
			}
			addDiff, addLat, addPlat := d.Histograms()
			if diff, err = store.MergeEncoded(diff, addDiff); err != nil {
				return err
			}
			if lat, err = store.MergeEncoded(lat, addLat); err != nil {
				return err
			}
			if plat, err = store.MergeEncoded(plat, addPlat); err != nil {
				return err
			}
			maxAbs := sql.NullFloat64{Float64: d.MaxAbs, Valid: d.HasMaxAbs}
			if _, err := up.ExecContext(ctx, k.Shadow, k.Version, k.Span, k.Start, k.Primary, k.PrimaryVersion, k.Origin,
				d.Pairs, d.OK, d.Errors, d.Timeouts, d.ClassPairs, d.DisagreePairs, d.ClassRows, d.AgreeRows,
				d.FloatPairs, d.Elements, finiteOrInf(d.SumAbs), finiteOrInf(d.SumSq), maxAbs, nilIfEmpty(diff), nilIfEmpty(lat), nilIfEmpty(plat),
				d.CPUUS, d.CPURuns); err != nil {
				return fmt.Errorf("write shadow rollup: %w", err)
			}
		}
	}
	if len(ru.Confusion) > 0 {
		up := tx.StmtContext(ctx, st.confusion)
		for k, n := range ru.Confusion {
			if _, err := up.ExecContext(ctx, k.Shadow, k.Version, k.Span, k.Start, k.PrimaryClass, k.ShadowClass, k.Origin, n); err != nil {
				return fmt.Errorf("write confusion rollup: %w", err)
			}
		}
	}
	for k, d := range ru.Replicas {
		if _, err := tx.ExecContext(ctx, `INSERT INTO replica_minutes (replica, minute, requests, errors, pairs) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (replica, minute) DO UPDATE SET requests = requests + excluded.requests, errors = errors + excluded.errors, pairs = pairs + excluded.pairs`,
			k.Replica, k.Minute, d.Requests, d.Errors, d.Pairs); err != nil {
			return fmt.Errorf("write replica counts: %w", err)
		}
	}
	if len(ru.Primaries) > 0 {
		up := tx.StmtContext(ctx, st.primary)
		for k, d := range ru.Primaries {
			if _, err := up.ExecContext(ctx, k.Span, k.Start, k.Model, k.Version, d.Requests, d.Errors, d.CPUUS, d.CPURuns); err != nil {
				return fmt.Errorf("write primary rollup: %w", err)
			}
		}
	}
	return nil
}

// finiteOrInf keeps the NOT NULL sums storable: SQLite stores NaN as NULL.
// Comparisons never produce NaN differences, so this only guards.
func finiteOrInf(f float64) float64 {
	if math.IsNaN(f) {
		return math.Inf(1)
	}
	return f
}

func nilIfEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

// trimRollups deletes the rollups that end by the start of the day holding
// the oldest row kept (rollup.TrimBefore), in chunks like the rows.
func (db *DB) trimRollups(ctx context.Context, oldestMinutes ...int64) (deleted int64, err error) {
	for _, span := range rollup.Spans {
		bound := rollup.TrimBefore(span, oldestMinutes...)
		for _, query := range []string{
			`DELETE FROM shadow_rollups WHERE (shadow, version, span, start, primary_model, primary_version, origin) IN
				(SELECT shadow, version, span, start, primary_model, primary_version, origin FROM shadow_rollups
				WHERE span = ` + fmt.Sprint(span) + ` AND start < ? ORDER BY start LIMIT ?)`,
			`DELETE FROM confusion_rollups WHERE (shadow, version, span, start, primary_class, shadow_class, origin) IN
				(SELECT shadow, version, span, start, primary_class, shadow_class, origin FROM confusion_rollups
				WHERE span = ` + fmt.Sprint(span) + ` AND start < ? ORDER BY start LIMIT ?)`,
			`DELETE FROM primary_rollups WHERE (span, start, model, version) IN
				(SELECT span, start, model, version FROM primary_rollups
				WHERE span = ` + fmt.Sprint(span) + ` AND start < ? ORDER BY start LIMIT ?)`,
		} {
			n, err := db.deleteChunks(ctx, query, bound)
			if deleted += n; err != nil {
				return deleted, fmt.Errorf("retention of rollups: %w", err)
			}
		}
	}
	// Replicas' minutes go with the days of the rollups, so that the
	// breakdown by replica adds up to the report's totals.
	bound := rollup.TrimBefore(rollup.Spans[len(rollup.Spans)-1], oldestMinutes...)
	n, err := db.deleteChunks(ctx, `DELETE FROM replica_minutes WHERE (replica, minute) IN
		(SELECT replica, minute FROM replica_minutes WHERE minute < ? ORDER BY minute LIMIT ?)`, bound)
	if deleted += n; err != nil {
		return deleted, fmt.Errorf("retention of replica counts: %w", err)
	}
	return deleted, nil
}

// oldestMinutes returns the minute of the oldest stored shadow result and
// prediction, or math.MaxInt64 for an empty table.
func (db *DB) oldestMinutes(ctx context.Context) (shadowMinute, primaryMinute int64, err error) {
	var s, p sql.NullInt64
	err = db.read.QueryRowContext(ctx, `SELECT (SELECT min(time_us) FROM shadow_results), (SELECT min(time_us) FROM predictions)`).Scan(&s, &p)
	if err != nil {
		return 0, 0, fmt.Errorf("retention of rollups: %w", err)
	}
	shadowMinute, primaryMinute = math.MaxInt64, math.MaxInt64
	if s.Valid {
		shadowMinute = rollup.MinuteOf(s.Int64)
	}
	if p.Valid {
		primaryMinute = rollup.MinuteOf(p.Int64)
	}
	return shadowMinute, primaryMinute, nil
}
