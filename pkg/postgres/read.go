package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/understudy-ml/understudy/pkg/store"
	"github.com/understudy-ml/understudy/pkg/store/rollup"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// snapshot is a REPEATABLE READ READ ONLY transaction on one pooled
// connection: every query through it sees the state of its first query,
// and none of them blocks a writer. The rollup reads hand store/rollup the
// query of one span; it covers the window and adds the rows up.
//
// origin, when set, restricts every read of shadow rows and their rollups
// to that origin (store.Snapshot.Origin); a view shares its transaction
// with the snapshot it came from, which alone closes it.
type snapshot struct {
	tx     pgx.Tx
	origin string
	view   bool
}

var _ store.Snapshot = (*snapshot)(nil)

// Snapshot starts a read transaction.
func (db *DB) Snapshot(ctx context.Context) (store.Snapshot, error) {
	tx, err := db.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, db.errorf("begin read: %w", err)
	}
	return &snapshot{tx: tx}, nil
}

// Origin implements store.Snapshot.
func (s *snapshot) Origin(o string) store.Snapshot {
	return &snapshot{tx: s.tx, origin: o, view: true}
}

// Close ends the snapshot; closing a view does nothing.
func (s *snapshot) Close() error {
	if s.view {
		return nil
	}
	if err := s.tx.Rollback(context.Background()); err != nil && !errors.Is(err, pgx.ErrTxClosed) {
		return err
	}
	return nil
}

// args numbers query parameters as they are added.
type args []any

func (a *args) add(v any) string {
	*a = append(*a, v)
	return "$" + strconv.Itoa(len(*a))
}

// shadowWhere returns the conditions selecting a shadow and version, each
// only when given, and the snapshot's origin, ending in AND so that more
// can follow. Every table it is used on has those columns.
func (s *snapshot) shadowWhere(a *args, shadow, version string) string {
	var w strings.Builder
	w.WriteString(s.originWhere(a, ""))
	if shadow != "" {
		w.WriteString("shadow = " + a.add(shadow) + " AND ")
	}
	if version != "" {
		w.WriteString("version = " + a.add(version) + " AND ")
	}
	return w.String()
}

// originWhere returns the condition selecting the snapshot's origin in
// the table of alias ("" for none), ending in AND; "" when it has none.
func (s *snapshot) originWhere(a *args, alias string) string {
	if s.origin == "" {
		return ""
	}
	if alias != "" {
		alias += "."
	}
	return alias + "origin = " + a.add(s.origin) + " AND "
}

// each runs query and calls f with its rows, scanned into dest.
func (s *snapshot) each(ctx context.Context, query string, a args, dest []any, f func() error) error {
	rows, err := s.tx.Query(ctx, query, a...)
	if err != nil {
		return err
	}
	_, err = pgx.ForEachRow(rows, dest, f)
	return err
}

// LatestPrediction implements store.Snapshot.
func (s *snapshot) LatestPrediction(ctx context.Context) (m understudy.ModelRef, ok bool, err error) {
	err = s.tx.QueryRow(ctx, `SELECT model, version FROM predictions ORDER BY time_us DESC LIMIT 1`).Scan(&m.Name, &m.Version)
	if errors.Is(err, pgx.ErrNoRows) {
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
	var p store.PrimaryCounts
	return s.each(ctx, `SELECT model, version, sum(requests)::bigint, sum(errors)::bigint, sum(cpu_us)::bigint, sum(cpu_runs)::bigint
		FROM primary_rollups WHERE span = $1 AND start >= $2 AND start < $3 GROUP BY model, version`,
		args{seg.Span, seg.Lo, seg.Hi}, []any{&p.Model, &p.Version, &p.Requests, &p.Errors, &p.CPUUS, &p.CPURuns},
		func() error { return fn(p) })
}

// ShadowVersions implements store.Snapshot.
func (s *snapshot) ShadowVersions(ctx context.Context) ([]understudy.ModelRef, error) {
	// Skip from one (shadow, version) to the next along the primary key
	// instead of reading every rollup row. A version has rollups of an
	// origin if it has a day's: every row is counted at every span, and
	// retention deletes the days last. Its days are few and the primary
	// key's prefix finds them.
	var a args
	where := ""
	if s.origin != "" {
		where = `WHERE EXISTS (SELECT 1 FROM shadow_rollups r WHERE r.shadow = v.shadow AND r.version = v.version
			AND r.span = ` + a.add(rollup.Day) + ` AND r.origin = ` + a.add(s.origin) + `)`
	}
	rows, err := s.tx.Query(ctx, `WITH RECURSIVE v(shadow, version) AS (
			(SELECT shadow, version FROM shadow_rollups ORDER BY shadow, version LIMIT 1)
			UNION ALL
			SELECT n.shadow, n.version FROM v, LATERAL (SELECT m.shadow, m.version FROM shadow_rollups m
				WHERE (m.shadow, m.version) > (v.shadow, v.version) ORDER BY m.shadow, m.version LIMIT 1) n)
		SELECT shadow, version FROM v `+where, a...)
	if err != nil {
		return nil, fmt.Errorf("read shadow versions: %w", err)
	}
	out := []understudy.ModelRef{}
	var m understudy.ModelRef
	if _, err := pgx.ForEachRow(rows, []any{&m.Name, &m.Version}, func() error { out = append(out, m); return nil }); err != nil {
		return nil, fmt.Errorf("read shadow versions: %w", err)
	}
	return out, nil
}

// ShadowSpan implements store.Snapshot.
func (s *snapshot) ShadowSpan(ctx context.Context, shadow, version string) (first time.Time, ok bool, err error) {
	var a args
	where := s.shadowWhere(&a, shadow, version)
	var m *int64
	if err := s.tx.QueryRow(ctx, `SELECT min(start) FROM shadow_rollups WHERE `+where+`span = 1`, a...).Scan(&m); err != nil {
		return time.Time{}, false, fmt.Errorf("read shadow span: %w", err)
	}
	if m == nil {
		return time.Time{}, false, nil
	}
	return time.Unix(*m*60, 0).UTC(), true, nil
}

// ShadowSummaries implements store.Snapshot.
func (s *snapshot) ShadowSummaries(ctx context.Context, f store.RollupFilter) ([]store.ShadowSummary, error) {
	out, err := rollup.ShadowSummaries(ctx, f, s.shadowRollups)
	if err != nil {
		return nil, fmt.Errorf("read shadow rollups: %w", err)
	}
	return out, nil
}

// histogramsSQL reads every bucket of a rollup row r in one index range
// scan, as three arrays in the order of the primary key (kind, bucket);
// split splits them. One scan per row, rather than one per histogram, halves
// the read of a week's hours.
const histogramsSQL = `LEFT JOIN LATERAL (SELECT array_agg(kind) AS k, array_agg(bucket) AS i, array_agg(n) AS n
	FROM (SELECT kind, bucket, n FROM shadow_rollup_buckets b WHERE b.rollup_id = r.id ORDER BY kind, bucket) o) h ON true`

// split turns a rollup row's bucket rows back into the storage form of its
// three histograms (store.Sparse encoded), reusing the buffers in hs.
func split(hs *[3][]byte, kind []int16, idx []int32, n []int64) error {
	for k := range hs {
		hs[k] = hs[k][:0]
	}
	var cur store.Sparse
	flush := func(k int16) error {
		if len(cur) == 0 {
			return nil
		}
		if k < 0 || int(k) >= len(hs) {
			return fmt.Errorf("rollup buckets: unknown kind %d", k)
		}
		hs[k] = cur.Encode(hs[k])
		cur = cur[:0]
		return nil
	}
	for j := range kind {
		if j > 0 && kind[j] != kind[j-1] {
			if err := flush(kind[j-1]); err != nil {
				return err
			}
		}
		// The sorted subquery feeds array_agg in order; the storage form
		// needs ascending buckets, so check rather than trust.
		if len(cur) > 0 && int(idx[j]) <= cur[len(cur)-1].I || j > 0 && kind[j] < kind[j-1] {
			return fmt.Errorf("rollup buckets: out of order")
		}
		cur = append(cur, store.BucketCount{I: int(idx[j]), N: n[j]})
	}
	if len(kind) > 0 {
		return flush(kind[len(kind)-1])
	}
	return nil
}

// encode turns one histogram's bucket rows, ascending, back into the
// storage form that store/rollup reads, appending to dst.
func encode(dst []byte, idx []int32, n []int64) []byte {
	s := make(store.Sparse, len(idx))
	for i := range idx {
		s[i] = store.BucketCount{I: int(idx[i]), N: n[i]}
	}
	return s.Encode(dst)
}

func (s *snapshot) shadowRollups(ctx context.Context, shadow, version string, seg rollup.Segment, fn func(*rollup.ShadowRow) error) error {
	var (
		r    rollup.ShadowRow
		kind []int16
		idx  []int32
		n    []int64
		hs   [3][]byte
		a    args
	)
	where := s.shadowWhere(&a, shadow, version)
	q := `SELECT shadow, version, start, primary_model, primary_version,
			pairs, ok, errors, timeouts, class_pairs, disagree_pairs, class_rows, agree_rows, float_pairs, elements,
			sum_abs, sum_sq, max_abs, cpu_us, cpu_runs, h.k, h.i, h.n
		FROM shadow_rollups r ` + histogramsSQL + ` WHERE ` + where + ` span = ` + a.add(seg.Span) + ` AND start >= ` + a.add(seg.Lo) + ` AND start < ` + a.add(seg.Hi)
	return s.each(ctx, q, a, []any{&r.Shadow, &r.Version, &r.Start, &r.Primary, &r.PrimaryVersion,
		&r.Pairs, &r.OK, &r.Errors, &r.Timeouts, &r.ClassPairs, &r.DisagreePairs, &r.ClassRows, &r.AgreeRows, &r.FloatPairs, &r.Elements,
		&r.SumAbs, &r.SumSq, &r.MaxAbs, &r.CPUUS, &r.CPURuns, &kind, &idx, &n}, func() error {
		// fn keeps nothing of the row, so the encodings reuse their buffers.
		if err := split(&hs, kind, idx, n); err != nil {
			return err
		}
		r.Diff, r.Latency, r.PrimaryLatency = hs[kindDiff], hs[kindLatency], hs[kindPrimaryLatency]
		return fn(&r)
	})
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
	var c store.ConfusionCell
	a := args{shadow, version, seg.Span, seg.Lo, seg.Hi}
	return s.each(ctx, `SELECT primary_class, shadow_class, sum(n)::bigint FROM confusion_rollups
		WHERE `+s.originWhere(&a, "")+`shadow = $1 AND version = $2 AND span = $3 AND start >= $4 AND start < $5
		GROUP BY primary_class, shadow_class`, a,
		[]any{&c.Primary, &c.Shadow, &c.N}, func() error { return fn(c) })
}

// ServedCounts implements store.Snapshot: a canary's answers and its
// fallbacks, counted from the rows (the partial indexes keep the reads to
// the canaries' rows).
func (s *snapshot) ServedCounts(ctx context.Context, from, to time.Time) ([]store.ServedCounts, error) {
	lo, hi := rollup.MicroRange(from, to)
	rows, err := s.tx.Query(ctx, `SELECT model, version, sum(answered)::bigint, sum(fallbacks)::bigint FROM (
			SELECT model, version, count(*) AS answered, 0 AS fallbacks FROM predictions
			WHERE served_by <> 'primary' AND served_by = 'candidate' AND time_us >= $1 AND time_us < $2 GROUP BY model, version
			UNION ALL
			SELECT shadow, version, 0, count(*) FROM shadow_results
			WHERE served_by <> 'primary' AND served_by = 'fallback' AND status <> 'ok' AND time_us >= $1 AND time_us < $2 GROUP BY shadow, version
		) c GROUP BY model, version ORDER BY model, version`, lo, hi)
	if err != nil {
		return nil, fmt.Errorf("read canary counts: %w", err)
	}
	var out []store.ServedCounts
	var c store.ServedCounts
	_, err = pgx.ForEachRow(rows, []any{&c.Model, &c.Version, &c.Answered, &c.Fallbacks}, func() error {
		out = append(out, c)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read canary counts: %w", err)
	}
	return out, nil
}

// Replicas implements store.Snapshot.
func (s *snapshot) Replicas(ctx context.Context, from, to time.Time) ([]store.ReplicaCounts, error) {
	lo, hi := rollup.MinuteRange(from, to)
	rows, err := s.tx.Query(ctx, `SELECT replica, sum(requests)::bigint, sum(errors)::bigint, sum(pairs)::bigint, min(minute), max(minute)
		FROM replica_minutes WHERE minute >= $1 AND minute < $2 GROUP BY replica ORDER BY replica`, lo, hi)
	if err != nil {
		return nil, fmt.Errorf("read replica counts: %w", err)
	}
	var out []store.ReplicaCounts
	var rc store.ReplicaCounts
	var first, last int64
	_, err = pgx.ForEachRow(rows, []any{&rc.Replica, &rc.Requests, &rc.Errors, &rc.Pairs, &first, &last}, func() error {
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
	var (
		out  store.PairSamples
		lat  int64
		plat *int64
		diff *float64
	)
	a := args{shadow, version, lo, hi}
	err := s.each(ctx, `SELECT latency_us, primary_latency_us, max_abs_diff FROM shadow_results
		WHERE `+s.originWhere(&a, "")+`shadow = $1 AND version = $2 AND time_us >= $3 AND time_us < $4 AND status = 'ok'`, a,
		[]any{&lat, &plat, &diff}, func() error {
			out.Latency = append(out.Latency, float64(lat))
			if plat != nil {
				out.PrimaryLatency = append(out.PrimaryLatency, float64(*plat))
			}
			if diff != nil {
				out.MaxAbsDiff = append(out.MaxAbsDiff, *diff)
			}
			return nil
		})
	if err != nil {
		return nil, fmt.Errorf("read pair samples: %w", err)
	}
	return &out, nil
}

// Scores implements store.Snapshot.
func (s *snapshot) Scores(ctx context.Context, shadow, version string, from, to time.Time, limit int) (primary, shadowScores []float64, err error) {
	lo, hi := rollup.MicroRange(from, to)
	var p, q float64
	a := args{shadow, version, lo, hi, limit}
	err = s.each(ctx, `SELECT primary_score, shadow_score FROM shadow_results
		WHERE `+s.originWhere(&a, "")+`shadow = $1 AND version = $2 AND time_us >= $3 AND time_us < $4 AND status = 'ok'
			AND primary_score IS NOT NULL AND shadow_score IS NOT NULL
		ORDER BY time_us DESC LIMIT $5`, a, []any{&p, &q}, func() error {
		primary, shadowScores = append(primary, p), append(shadowScores, q)
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("read scores: %w", err)
	}
	return primary, shadowScores, nil
}

// Accuracy implements store.Snapshot. It walks the partial index of
// labelled predictions by time and looks each one's shadow row up by its
// key: the LATERAL join, kept from being flattened by its LIMIT (the key
// is unique), fixes that order (as SQLite's CROSS JOIN does),
// since a planner without fresh statistics on shadow_results would start
// from its million rows instead. The conditions are SQLite's, with its
// sums of booleans as counts with a FILTER: a comparison with NULL counts
// in neither.
func (s *snapshot) Accuracy(ctx context.Context, shadow, version string, from, to time.Time) (store.AccuracyCounts, error) {
	lo, hi := rollup.MicroRange(from, to)
	var a store.AccuracyCounts
	q := args{shadow, version, lo, hi}
	err := s.tx.QueryRow(ctx, `SELECT count(*),
			count(*) FILTER (WHERE p.label <> round(p.label)),
			count(*) FILTER (WHERE s.primary_class IS NULL OR s.shadow_class IS NULL),
			count(*) FILTER (WHERE s.primary_class = p.label),
			count(*) FILTER (WHERE s.shadow_class = p.label),
			count(*) FILTER (WHERE s.primary_class = p.label AND s.shadow_class <> p.label),
			count(*) FILTER (WHERE s.primary_class <> p.label AND s.shadow_class = p.label),
			count(*) FILTER (WHERE s.primary_score IS NOT NULL AND s.shadow_score IS NOT NULL),
			coalesce(sum(abs(s.primary_score - p.label)) FILTER (WHERE s.shadow_score IS NOT NULL), 0),
			coalesce(sum(abs(s.shadow_score - p.label)) FILTER (WHERE s.primary_score IS NOT NULL), 0),
			count(*) FILTER (WHERE abs(s.primary_score - p.label) < abs(s.shadow_score - p.label)),
			count(*) FILTER (WHERE abs(s.shadow_score - p.label) < abs(s.primary_score - p.label))
		FROM (SELECT request_id, label FROM predictions
			WHERE label IS NOT NULL AND time_us >= $3 AND time_us < $4 OFFSET 0) p,
		LATERAL (SELECT primary_class, shadow_class, primary_score, shadow_score FROM shadow_results
			WHERE `+s.originWhere(&q, "")+`request_id = p.request_id AND shadow = $1 AND version = $2 AND status = 'ok' LIMIT 1) s`,
		q...).Scan(&a.Labelled, &a.NonIntegral, &a.NoClass, &a.PrimaryCorrect, &a.ShadowCorrect, &a.B, &a.C,
		&a.Scored, &a.PrimaryAbsErr, &a.ShadowAbsErr, &a.PrimaryCloser, &a.ShadowCloser)
	if err != nil {
		return a, fmt.Errorf("read accuracy of %q: %w", shadow, err)
	}
	return a, nil
}

// OutputNames implements store.Snapshot.
func (s *snapshot) OutputNames(ctx context.Context, shadow, version string, from, to time.Time) (class, float string, err error) {
	lo, hi := rollup.MicroRange(from, to)
	var raw []byte
	a := args{shadow, version, lo, hi}
	err = s.tx.QueryRow(ctx, `SELECT comparison FROM shadow_results
		WHERE `+s.originWhere(&a, "")+`shadow = $1 AND version = $2 AND time_us >= $3 AND time_us < $4 AND status = 'ok'
		ORDER BY time_us DESC LIMIT 1`, a...).Scan(&raw)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && len(raw) == 0) {
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
