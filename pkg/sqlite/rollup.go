package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"math"

	"github.com/understudy-ml/understudy/pkg/store"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// The writer keeps rollups (shadow_rollups, confusion_rollups and
// primary_rollups) in the same transaction as the rows they summarise, so
// that they never disagree with the committed rows. Each row is counted at
// every span: a report covers its window with the coarsest whole spans that
// fit and reads a few hundred rollup rows instead of millions of pairs.

// rollupSpans are the rollup spans in minutes, finest first: minutes,
// hours, days.
var rollupSpans = []int64{1, 60, 1440}

const (
	// upsertShadowRollup adds a batch's counts to a shadow_rollups row. The
	// histograms arrive already merged with the stored ones.
	upsertShadowRollup = `INSERT INTO shadow_rollups (shadow, version, span, start, primary_model, primary_version,
			pairs, ok, errors, timeouts, class_pairs, disagree_pairs, class_rows, agree_rows,
			float_pairs, elements, sum_abs, sum_sq, max_abs, diff_hist, latency_hist, primary_latency_hist, cpu_us, cpu_runs)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (shadow, version, span, start, primary_model, primary_version) DO UPDATE SET
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
		WHERE shadow = ? AND version = ? AND span = ? AND start = ? AND primary_model = ? AND primary_version = ?`
	upsertConfusion = `INSERT INTO confusion_rollups (shadow, version, span, start, primary_class, shadow_class, n) VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (shadow, version, span, start, primary_class, shadow_class) DO UPDATE SET n = n + excluded.n`
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

type rollupKey struct {
	shadow, version, primary, primaryVersion string
	span, start                              int64
}

type rollupDelta struct {
	pairs, ok, errors, timeouts            int64
	classPairs, disagreePairs              int64
	classRows, agreeRows                   int64
	floatPairs, elements                   int64
	sumAbs, sumSq                          float64
	maxAbs                                 sql.NullFloat64
	diffIdx, latencyIdx, primaryLatencyIdx []int
	cpuUS, cpuRuns                         int64
}

type confusionKey struct {
	shadow, version           string
	span, start               int64
	primaryClass, shadowClass int64
}

type primaryKey struct {
	model, version string
	span, start    int64
}

type primaryDelta struct {
	requests, errors, cpuUS, cpuRuns int64
}

// rollups accumulate one batch's committed rows.
type rollups struct {
	shadows   map[rollupKey]*rollupDelta
	confusion map[confusionKey]int64
	primaries map[primaryKey]*primaryDelta
}

func newRollups() *rollups {
	return &rollups{shadows: map[rollupKey]*rollupDelta{}, confusion: map[confusionKey]int64{}, primaries: map[primaryKey]*primaryDelta{}}
}

func minuteOf(us int64) int64 { return floorDiv(us, 60e6) }

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b < 0 {
		q--
	}
	return q
}

func (ru *rollups) addPrediction(r *predRow) {
	minute := minuteOf(r.timeUS)
	for _, span := range rollupSpans {
		k := primaryKey{r.model, r.version, span, floorDiv(minute, span) * span}
		d := ru.primaries[k]
		if d == nil {
			d = &primaryDelta{}
			ru.primaries[k] = d
		}
		d.requests++
		if r.status != understudy.StatusOK {
			d.errors++
		}
		if r.cpuUS.Valid {
			d.cpuUS += r.cpuUS.Int64
			d.cpuRuns++
		}
	}
}

func (ru *rollups) addShadow(r *shadowRow) {
	minute := minuteOf(r.timeUS)
	lat, plat, diff := -1, -1, -1
	if r.status == understudy.StatusOK {
		lat = store.LatencyBuckets.Index(float64(r.latencyUS))
		if r.primaryLatencyUS.Valid {
			plat = store.LatencyBuckets.Index(float64(r.primaryLatencyUS.Int64))
		}
		if r.maxAbsDiff.Valid {
			diff = store.DiffBuckets.Index(r.maxAbsDiff.Float64)
		}
	}
	for _, span := range rollupSpans {
		start := floorDiv(minute, span) * span
		k := rollupKey{r.shadow, r.version, r.primary, r.primaryVersion, span, start}
		d := ru.shadows[k]
		if d == nil {
			d = &rollupDelta{}
			ru.shadows[k] = d
		}
		d.add(r, lat, plat, diff)
		if r.status == understudy.StatusOK && r.agreement.Valid {
			for i := range r.primaryClasses {
				ru.confusion[confusionKey{r.shadow, r.version, span, start, r.primaryClasses[i], r.shadowClasses[i]}]++
			}
		}
	}
}

// add counts r, whose histogram buckets are given (-1 for none).
func (d *rollupDelta) add(r *shadowRow, lat, plat, diff int) {
	d.pairs++
	if r.cpuUS.Valid {
		d.cpuUS += r.cpuUS.Int64
		d.cpuRuns++
	}
	switch r.status {
	case understudy.StatusOK:
		d.ok++
	case understudy.StatusTimeout:
		d.timeouts++
		return
	default:
		d.errors++
		return
	}
	d.latencyIdx = append(d.latencyIdx, lat)
	if plat >= 0 {
		d.primaryLatencyIdx = append(d.primaryLatencyIdx, plat)
	}
	if r.agreement.Valid {
		d.classPairs++
		if r.agreement.Float64 < 1 {
			d.disagreePairs++
		}
		d.classRows += r.classRows
		d.agreeRows += r.agreeRows
	}
	if r.maxAbsDiff.Valid {
		m := r.maxAbsDiff.Float64
		d.floatPairs++
		d.diffIdx = append(d.diffIdx, diff)
		if !d.maxAbs.Valid || m > d.maxAbs.Float64 {
			d.maxAbs = sql.NullFloat64{Float64: m, Valid: true}
		}
		if r.elements.Valid && r.meanAbsDiff.Valid && r.sumSq.Valid {
			n := r.elements.Int64
			d.elements += n
			d.sumAbs += r.meanAbsDiff.Float64 * float64(n)
			d.sumSq += r.sumSq.Float64
		}
	}
}

// rollupClasses fills the row's class counts from the comparison's first
// class output, the one its Agreement comes from. A comparison that has an
// Agreement but no such output counts as one row.
func (r *shadowRow) rollupClasses(c *understudy.Comparison) {
	if c.Agreement == nil {
		return
	}
	for _, oc := range c.Outputs {
		if oc.Kind != understudy.KindClass || oc.Rows <= 0 {
			continue
		}
		r.classRows, r.agreeRows = int64(oc.Rows), int64(oc.Agree)
		if len(oc.PrimaryClasses) == oc.Rows && len(oc.ShadowClasses) == oc.Rows {
			r.primaryClasses, r.shadowClasses = append([]int64(nil), oc.PrimaryClasses...), append([]int64(nil), oc.ShadowClasses...)
		}
		return
	}
	r.classRows = 1
	if *c.Agreement == 1 {
		r.agreeRows = 1
	}
	if c.PrimaryClass != nil && c.ShadowClass != nil {
		r.primaryClasses, r.shadowClasses = []int64{*c.PrimaryClass}, []int64{*c.ShadowClass}
	}
}

// write adds the batch's rollups to the stored ones, inside tx.
func (ru *rollups) write(ctx context.Context, tx *sql.Tx, st *rollupStmts) error {
	if len(ru.shadows) > 0 {
		sel, up := tx.StmtContext(ctx, st.shadowHists), tx.StmtContext(ctx, st.shadow)
		for k, d := range ru.shadows {
			var diff, lat, plat []byte
			err := sel.QueryRowContext(ctx, k.shadow, k.version, k.span, k.start, k.primary, k.primaryVersion).Scan(&diff, &lat, &plat)
			if err != nil && err != sql.ErrNoRows {
				return fmt.Errorf("read shadow rollup: %w", err)
			}
			if diff, err = store.MergeEncoded(diff, store.SparseOf(d.diffIdx)); err != nil {
				return err
			}
			if lat, err = store.MergeEncoded(lat, store.SparseOf(d.latencyIdx)); err != nil {
				return err
			}
			if plat, err = store.MergeEncoded(plat, store.SparseOf(d.primaryLatencyIdx)); err != nil {
				return err
			}
			if _, err := up.ExecContext(ctx, k.shadow, k.version, k.span, k.start, k.primary, k.primaryVersion,
				d.pairs, d.ok, d.errors, d.timeouts, d.classPairs, d.disagreePairs, d.classRows, d.agreeRows,
				d.floatPairs, d.elements, finiteOrInf(d.sumAbs), finiteOrInf(d.sumSq), d.maxAbs, nilIfEmpty(diff), nilIfEmpty(lat), nilIfEmpty(plat),
				d.cpuUS, d.cpuRuns); err != nil {
				return fmt.Errorf("write shadow rollup: %w", err)
			}
		}
	}
	if len(ru.confusion) > 0 {
		up := tx.StmtContext(ctx, st.confusion)
		for k, n := range ru.confusion {
			if _, err := up.ExecContext(ctx, k.shadow, k.version, k.span, k.start, k.primaryClass, k.shadowClass, n); err != nil {
				return fmt.Errorf("write confusion rollup: %w", err)
			}
		}
	}
	if len(ru.primaries) > 0 {
		up := tx.StmtContext(ctx, st.primary)
		for k, d := range ru.primaries {
			if _, err := up.ExecContext(ctx, k.span, k.start, k.model, k.version, d.requests, d.errors, d.cpuUS, d.cpuRuns); err != nil {
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

// trimRollups deletes the rollups of every span and table that end by the
// start of the day holding the oldest row kept, in chunks like the rows.
// One bound for all: readers take days, hours or minutes as the window
// suits, and a report that read a trimmed hour beside an untrimmed day
// would contradict itself. So the rollups keep up to a day more than the
// rows, whole.
func (db *DB) trimRollups(ctx context.Context, shadowMinute, primaryMinute int64) (deleted int64, err error) {
	day := rollupSpans[len(rollupSpans)-1]
	bound := floorDiv(min(shadowMinute, primaryMinute), day) * day
	for _, span := range rollupSpans {
		for _, t := range []struct {
			query string
			bound int64
		}{
			{`DELETE FROM shadow_rollups WHERE (shadow, version, span, start, primary_model, primary_version) IN
				(SELECT shadow, version, span, start, primary_model, primary_version FROM shadow_rollups
				WHERE span = ` + fmt.Sprint(span) + ` AND start < ? ORDER BY start LIMIT ?)`, bound - span + 1},
			{`DELETE FROM confusion_rollups WHERE (shadow, version, span, start, primary_class, shadow_class) IN
				(SELECT shadow, version, span, start, primary_class, shadow_class FROM confusion_rollups
				WHERE span = ` + fmt.Sprint(span) + ` AND start < ? ORDER BY start LIMIT ?)`, bound - span + 1},
			{`DELETE FROM primary_rollups WHERE (span, start, model, version) IN
				(SELECT span, start, model, version FROM primary_rollups
				WHERE span = ` + fmt.Sprint(span) + ` AND start < ? ORDER BY start LIMIT ?)`, bound - span + 1},
		} {
			n, err := db.deleteChunks(ctx, t.query, t.bound)
			if deleted += n; err != nil {
				return deleted, fmt.Errorf("retention of rollups: %w", err)
			}
		}
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
		shadowMinute = minuteOf(s.Int64)
	}
	if p.Valid {
		primaryMinute = minuteOf(p.Int64)
	}
	return shadowMinute, primaryMinute, nil
}
