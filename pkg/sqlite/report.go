package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/understudy-ml/understudy/pkg/store"
	"github.com/understudy-ml/understudy/pkg/store/rollup"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// snapshot is a read transaction on the read pool: every query through it
// sees the same committed state, and none of them blocks the writer (WAL
// readers never do). The rollup reads hand store/rollup the query of one
// span; it covers the window and adds the rows up.
type snapshot struct {
	tx *sql.Tx
	// origin, if set, restricts every read of shadow rows and rollups to
	// that origin (store.Snapshot.Origin).
	origin string
	// view is set on the views Origin returns: they share the transaction
	// of the snapshot they came from, which alone ends it.
	view bool
}

var _ store.Snapshot = (*snapshot)(nil)

// Snapshot starts a read transaction.
func (db *DB) Snapshot(ctx context.Context) (store.Snapshot, error) {
	return db.snapshot(ctx)
}

func (db *DB) snapshot(ctx context.Context) (*snapshot, error) {
	tx, err := db.read.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("begin read: %w", err)
	}
	return &snapshot{tx: tx}, nil
}

// Close ends the snapshot; closing a view does nothing.
func (s *snapshot) Close() error {
	if s.view {
		return nil
	}
	if err := s.tx.Rollback(); err != nil && !errors.Is(err, sql.ErrTxDone) {
		return err
	}
	return nil
}

// LatestPrediction implements store.Snapshot.
func (s *snapshot) LatestPrediction(ctx context.Context) (m understudy.ModelRef, ok bool, err error) {
	err = s.tx.QueryRowContext(ctx, `SELECT model, version FROM predictions ORDER BY time_us DESC LIMIT 1`).Scan(&m.Name, &m.Version)
	if errors.Is(err, sql.ErrNoRows) {
		return m, false, nil
	} else if err != nil {
		return m, false, fmt.Errorf("read latest prediction: %w", err)
	}
	return m, true, nil
}

// PrimaryCounts implements store.Snapshot.
func (s *snapshot) PrimaryCounts(ctx context.Context, from, to time.Time) ([]store.PrimaryCounts, error) {
	out, err := rollup.PrimaryCounts(ctx, from, to, s.primaryRollups)
	if err != nil {
		return nil, fmt.Errorf("read primary rollups: %w", err)
	}
	return out, nil
}

func (s *snapshot) primaryRollups(ctx context.Context, seg rollup.Segment, fn func(store.PrimaryCounts) error) error {
	return s.each(ctx, `SELECT model, version, sum(requests), sum(errors), sum(cpu_us), sum(cpu_runs)
		FROM primary_rollups WHERE span = ? AND start >= ? AND start < ? GROUP BY model, version`,
		[]any{seg.Span, seg.Lo, seg.Hi}, func(rows *sql.Rows) error {
			var p store.PrimaryCounts
			if err := rows.Scan(&p.Model, &p.Version, &p.Requests, &p.Errors, &p.CPUUS, &p.CPURuns); err != nil {
				return err
			}
			return fn(p)
		})
}

// each runs query and calls f for every row.
func (s *snapshot) each(ctx context.Context, query string, args []any, f func(*sql.Rows) error) error {
	rows, err := s.tx.QueryContext(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := f(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// Origin implements store.Snapshot.
func (s *snapshot) Origin(o string) store.Snapshot {
	return &snapshot{tx: s.tx, origin: o, view: true}
}

// andOrigin is the condition of the snapshot's origin on a table of shadow
// rows or rollups (column prefix p), "" for every origin.
func (s *snapshot) andOrigin(p string) (string, []any) {
	if s.origin == "" {
		return "", nil
	}
	return " AND " + p + "origin = ?", []any{s.origin}
}

// ShadowVersions implements store.Snapshot.
func (s *snapshot) ShadowVersions(ctx context.Context) ([]understudy.ModelRef, error) {
	// Of one origin, the versions that have day rollups of it: every row
	// is counted at every span and retention trims whole days, so those
	// are the versions with rollups of it, found in a few rows each.
	of := ""
	var args []any
	if s.origin != "" {
		of = ` AND EXISTS (SELECT 1 FROM shadow_rollups r WHERE r.shadow = v.shadow AND r.version = v.version AND r.span = ? AND r.origin = ?)`
		args = []any{rollup.Day, s.origin}
	}
	// Skip from one (shadow, version) to the next along the primary key
	// instead of reading every minute.
	rows, err := s.tx.QueryContext(ctx, `WITH RECURSIVE v(shadow, version) AS (
			SELECT * FROM (SELECT shadow, version FROM shadow_rollups ORDER BY shadow, version LIMIT 1)
			UNION ALL
			SELECT (SELECT shadow FROM shadow_rollups m WHERE (m.shadow, m.version) > (v.shadow, v.version) ORDER BY shadow, version LIMIT 1),
			       (SELECT version FROM shadow_rollups m WHERE (m.shadow, m.version) > (v.shadow, v.version) ORDER BY shadow, version LIMIT 1)
			FROM v WHERE v.shadow IS NOT NULL)
		SELECT shadow, version FROM v WHERE shadow IS NOT NULL`+of, args...)
	if err != nil {
		return nil, fmt.Errorf("read shadow versions: %w", err)
	}
	defer rows.Close()
	out := []understudy.ModelRef{}
	for rows.Next() {
		var m understudy.ModelRef
		if err := rows.Scan(&m.Name, &m.Version); err != nil {
			return nil, fmt.Errorf("read shadow versions: %w", err)
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// ShadowSpan implements store.Snapshot.
func (s *snapshot) ShadowSpan(ctx context.Context, shadow, version string) (first time.Time, ok bool, err error) {
	where, args := s.shadowWhere(shadow, version)
	var m sql.NullInt64
	var bounds []any
	if s.origin != "" {
		// min(start) of one origin would read every minute of the others:
		// find its first day, then the first minute in that day.
		if err := s.tx.QueryRowContext(ctx, `SELECT min(start) FROM shadow_rollups WHERE `+where+`span = ?`, append(args, rollup.Day)...).Scan(&m); err != nil {
			return time.Time{}, false, fmt.Errorf("read shadow span: %w", err)
		}
		if !m.Valid {
			return time.Time{}, false, nil
		}
		where += "start >= ? AND start < ? AND "
		bounds = []any{m.Int64, m.Int64 + rollup.Day}
	}
	if err := s.tx.QueryRowContext(ctx, `SELECT min(start) FROM shadow_rollups WHERE `+where+`span = 1`, append(args, bounds...)...).Scan(&m); err != nil {
		return time.Time{}, false, fmt.Errorf("read shadow span: %w", err)
	}
	if !m.Valid {
		return time.Time{}, false, nil
	}
	return time.Unix(m.Int64*60, 0).UTC(), true, nil
}

// ShadowSummaries implements store.Snapshot.
func (s *snapshot) ShadowSummaries(ctx context.Context, f store.RollupFilter) ([]store.ShadowSummary, error) {
	out, err := rollup.ShadowSummaries(ctx, f, s.shadowRollups)
	if err != nil {
		return nil, fmt.Errorf("read shadow rollups: %w", err)
	}
	return out, nil
}

func (s *snapshot) shadowRollups(ctx context.Context, shadow, version string, seg rollup.Segment, fn func(*rollup.ShadowRow) error) error {
	var r rollup.ShadowRow
	var maxAbs sql.NullFloat64
	where, args := s.shadowWhere(shadow, version)
	return s.each(ctx, `SELECT shadow, version, start, primary_model, primary_version,
			pairs, ok, errors, timeouts, class_pairs, disagree_pairs, class_rows, agree_rows, float_pairs, elements,
			sum_abs, sum_sq, max_abs, diff_hist, latency_hist, primary_latency_hist, cpu_us, cpu_runs
		FROM shadow_rollups WHERE `+where+` span = ? AND start >= ? AND start < ?`, append(args, seg.Span, seg.Lo, seg.Hi),
		func(rows *sql.Rows) error {
			if err := rows.Scan(&r.Shadow, &r.Version, &r.Start, &r.Primary, &r.PrimaryVersion,
				&r.Pairs, &r.OK, &r.Errors, &r.Timeouts, &r.ClassPairs, &r.DisagreePairs, &r.ClassRows, &r.AgreeRows, &r.FloatPairs, &r.Elements,
				&r.SumAbs, &r.SumSq, &maxAbs, &r.Diff, &r.Latency, &r.PrimaryLatency, &r.CPUUS, &r.CPURuns); err != nil {
				return err
			}
			r.MaxAbs = ptrFloat(maxAbs)
			return fn(&r)
		})
}

// shadowWhere returns the conditions selecting a shadow and version, each
// only when given, and the snapshot's origin, ending in AND so that more
// can follow.
func (s *snapshot) shadowWhere(shadow, version string) (string, []any) {
	var w strings.Builder
	var args []any
	if s.origin != "" {
		w.WriteString("origin = ? AND ")
		args = append(args, s.origin)
	}
	if shadow != "" {
		w.WriteString("shadow = ? AND ")
		args = append(args, shadow)
	}
	if version != "" {
		w.WriteString("version = ? AND ")
		args = append(args, version)
	}
	return w.String(), args
}

// Confusion implements store.Snapshot.
func (s *snapshot) Confusion(ctx context.Context, shadow, version string, from, to time.Time) ([]store.ConfusionCell, error) {
	out, err := rollup.Confusion(ctx, shadow, version, from, to, s.confusionRollups)
	if err != nil {
		return nil, fmt.Errorf("read confusion: %w", err)
	}
	return out, nil
}

func (s *snapshot) confusionRollups(ctx context.Context, shadow, version string, seg rollup.Segment, fn func(store.ConfusionCell) error) error {
	origin, oargs := s.andOrigin("")
	return s.each(ctx, `SELECT primary_class, shadow_class, sum(n) FROM confusion_rollups
		WHERE shadow = ? AND version = ? AND span = ? AND start >= ? AND start < ?`+origin+`
		GROUP BY primary_class, shadow_class`, append([]any{shadow, version, seg.Span, seg.Lo, seg.Hi}, oargs...),
		func(rows *sql.Rows) error {
			var c store.ConfusionCell
			if err := rows.Scan(&c.Primary, &c.Shadow, &c.N); err != nil {
				return err
			}
			return fn(c)
		})
}

// Replicas implements store.Snapshot.
func (s *snapshot) Replicas(ctx context.Context, from, to time.Time) ([]store.ReplicaCounts, error) {
	lo, hi := rollup.MinuteRange(from, to)
	var out []store.ReplicaCounts
	err := s.each(ctx, `SELECT replica, sum(requests), sum(errors), sum(pairs), min(minute), max(minute) FROM replica_minutes
		WHERE minute >= ? AND minute < ? GROUP BY replica ORDER BY replica`, []any{lo, hi}, func(rows *sql.Rows) error {
		var rc store.ReplicaCounts
		var first, last int64
		if err := rows.Scan(&rc.Replica, &rc.Requests, &rc.Errors, &rc.Pairs, &first, &last); err != nil {
			return err
		}
		rc.First, rc.Last = time.Unix(first*60, 0).UTC(), time.Unix(last*60, 0).UTC()
		out = append(out, rc)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read replica counts: %w", err)
	}
	return out, nil
}

// PairSamples implements store.Snapshot.
func (s *snapshot) PairSamples(ctx context.Context, shadow, version string, from, to time.Time) (*store.PairSamples, error) {
	lo, hi := rollup.MicroRange(from, to)
	origin, oargs := s.andOrigin("")
	rows, err := s.tx.QueryContext(ctx, `SELECT latency_us, primary_latency_us, max_abs_diff FROM shadow_results
		WHERE shadow = ? AND version = ? AND time_us >= ? AND time_us < ? AND status = 'ok'`+origin, append([]any{shadow, version, lo, hi}, oargs...)...)
	if err != nil {
		return nil, fmt.Errorf("read pair samples: %w", err)
	}
	defer rows.Close()
	var out store.PairSamples
	for rows.Next() {
		var lat int64
		var plat sql.NullInt64
		var diff sql.NullFloat64
		if err := rows.Scan(&lat, &plat, &diff); err != nil {
			return nil, fmt.Errorf("read pair samples: %w", err)
		}
		out.Latency = append(out.Latency, float64(lat))
		if plat.Valid {
			out.PrimaryLatency = append(out.PrimaryLatency, float64(plat.Int64))
		}
		if diff.Valid {
			out.MaxAbsDiff = append(out.MaxAbsDiff, diff.Float64)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read pair samples: %w", err)
	}
	return &out, nil
}

// Scores implements store.Snapshot.
func (s *snapshot) Scores(ctx context.Context, shadow, version string, from, to time.Time, limit int) (primary, shadowScores []float64, err error) {
	lo, hi := rollup.MicroRange(from, to)
	origin, oargs := s.andOrigin("")
	rows, err := s.tx.QueryContext(ctx, `SELECT primary_score, shadow_score FROM shadow_results
		WHERE shadow = ? AND version = ? AND time_us >= ? AND time_us < ? AND status = 'ok'
			AND primary_score IS NOT NULL AND shadow_score IS NOT NULL`+origin+`
		ORDER BY time_us DESC LIMIT ?`, append(append([]any{shadow, version, lo, hi}, oargs...), limit)...)
	if err != nil {
		return nil, nil, fmt.Errorf("read scores: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var p, q float64
		if err := rows.Scan(&p, &q); err != nil {
			return nil, nil, fmt.Errorf("read scores: %w", err)
		}
		primary, shadowScores = append(primary, p), append(shadowScores, q)
	}
	return primary, shadowScores, rows.Err()
}

// Accuracy implements store.Snapshot. It walks the partial index of
// labelled predictions by time.
func (s *snapshot) Accuracy(ctx context.Context, shadow, version string, from, to time.Time) (store.AccuracyCounts, error) {
	lo, hi := rollup.MicroRange(from, to)
	origin, oargs := s.andOrigin("s.")
	var a store.AccuracyCounts
	// CROSS JOIN keeps the labelled predictions as the outer loop.
	err := s.tx.QueryRowContext(ctx, `SELECT count(*),
			coalesce(sum(p.label <> round(p.label)), 0),
			coalesce(sum(s.primary_class IS NULL OR s.shadow_class IS NULL), 0),
			coalesce(sum(s.primary_class = p.label), 0),
			coalesce(sum(s.shadow_class = p.label), 0),
			coalesce(sum(s.primary_class = p.label AND s.shadow_class <> p.label), 0),
			coalesce(sum(s.primary_class <> p.label AND s.shadow_class = p.label), 0),
			coalesce(sum(s.primary_score IS NOT NULL AND s.shadow_score IS NOT NULL), 0),
			coalesce(sum(CASE WHEN s.shadow_score IS NOT NULL THEN abs(s.primary_score - p.label) END), 0),
			coalesce(sum(CASE WHEN s.primary_score IS NOT NULL THEN abs(s.shadow_score - p.label) END), 0),
			coalesce(sum(abs(s.primary_score - p.label) < abs(s.shadow_score - p.label)), 0),
			coalesce(sum(abs(s.shadow_score - p.label) < abs(s.primary_score - p.label)), 0)
		FROM predictions p INDEXED BY predictions_labelled
		CROSS JOIN shadow_results s ON s.request_id = p.request_id AND s.shadow = ? AND s.version = ?
		WHERE p.label IS NOT NULL AND p.time_us >= ? AND p.time_us < ? AND s.status = 'ok'`+origin,
		append([]any{shadow, version, lo, hi}, oargs...)...).Scan(&a.Labelled, &a.NonIntegral, &a.NoClass, &a.PrimaryCorrect, &a.ShadowCorrect, &a.B, &a.C,
		&a.Scored, &a.PrimaryAbsErr, &a.ShadowAbsErr, &a.PrimaryCloser, &a.ShadowCloser)
	if err != nil {
		return a, fmt.Errorf("read accuracy of %q: %w", shadow, err)
	}
	return a, nil
}

// OutputNames implements store.Snapshot.
func (s *snapshot) OutputNames(ctx context.Context, shadow, version string, from, to time.Time) (class, float string, err error) {
	lo, hi := rollup.MicroRange(from, to)
	origin, oargs := s.andOrigin("")
	var raw []byte
	err = s.tx.QueryRowContext(ctx, `SELECT comparison FROM shadow_results
		WHERE shadow = ? AND version = ? AND time_us >= ? AND time_us < ? AND status = 'ok'`+origin+`
		ORDER BY time_us DESC LIMIT 1`, append([]any{shadow, version, lo, hi}, oargs...)...).Scan(&raw)
	if errors.Is(err, sql.ErrNoRows) || len(raw) == 0 {
		return "", "", nil
	} else if err != nil {
		return "", "", fmt.Errorf("read output names of %q: %w", shadow, err)
	}
	var c understudy.Comparison
	if err := json.Unmarshal(raw, &c); err != nil {
		return "", "", fmt.Errorf("read output names of %q: %w", shadow, err)
	}
	class, float = store.HeadlineOutputs(&c)
	return class, float, nil
}
