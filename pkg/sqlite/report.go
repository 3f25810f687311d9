package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/understudy-ml/understudy/pkg/store"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// Snapshot is a read transaction on the read pool: every query through it
// sees the same committed state, and none of them blocks the writer (WAL
// readers never do). Close it when done.
type Snapshot struct {
	tx *sql.Tx
}

// BeginRead starts a Snapshot.
func (db *DB) BeginRead(ctx context.Context) (*Snapshot, error) {
	tx, err := db.read.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("begin read: %w", err)
	}
	return &Snapshot{tx: tx}, nil
}

// Close ends the snapshot.
func (s *Snapshot) Close() error {
	if err := s.tx.Rollback(); err != nil && !errors.Is(err, sql.ErrTxDone) {
		return err
	}
	return nil
}

// minuteRange turns [from, to) into whole minutes [lo, hi), rounding from
// down and to up; a zero from means from the start.
func minuteRange(from, to time.Time) (lo, hi int64) {
	// Far enough from the int64 limits that rounding to a day cannot
	// overflow.
	lo = math.MinInt64 / 4
	if !from.IsZero() {
		lo = minuteOf(from.UnixMicro())
	}
	hi = math.MaxInt64 / 4
	if !to.IsZero() {
		hi = minuteOf(to.UnixMicro() - 1 + 60e6)
	}
	return lo, hi
}

// segment is the rollups of one span whose start is in [lo, hi).
type segment struct {
	span, lo, hi int64
}

// cover splits the minutes [lo, hi) into segments of the coarsest spans
// that fit whole, finest at the edges: whole days in the middle, hours
// around them and minutes at the ends. spans are the usable spans, finest
// (1) first.
func cover(lo, hi int64, spans []int64) []segment {
	if lo >= hi {
		return nil
	}
	s := spans[len(spans)-1]
	if s == 1 {
		return []segment{{1, lo, hi}}
	}
	a, b := -floorDiv(-lo, s)*s, floorDiv(hi, s)*s
	if a >= b {
		return cover(lo, hi, spans[:len(spans)-1])
	}
	out := cover(lo, a, spans[:len(spans)-1])
	out = append(out, segment{s, a, b})
	return append(out, cover(b, hi, spans[:len(spans)-1])...)
}

// spansFor returns the spans whose rollups fall in one step of a series
// cut into steps of step minutes aligned to the epoch (0: any span).
func spansFor(step int64) []int64 {
	if step == 0 {
		return rollupSpans
	}
	var out []int64
	for _, s := range rollupSpans {
		if s <= step && step%s == 0 {
			out = append(out, s)
		}
	}
	return out
}

// microRange is [from, to) in unix microseconds; zero times are unbounded.
func microRange(from, to time.Time) (lo, hi int64) {
	lo, hi = math.MinInt64, math.MaxInt64
	if !from.IsZero() {
		lo = from.UnixMicro()
	}
	if !to.IsZero() {
		hi = to.UnixMicro()
	}
	return lo, hi
}

// LatestPrediction returns the model and version of the newest prediction;
// ok is false when there is none.
func (s *Snapshot) LatestPrediction(ctx context.Context) (m understudy.ModelRef, ok bool, err error) {
	err = s.tx.QueryRowContext(ctx, `SELECT model, version FROM predictions ORDER BY time_us DESC LIMIT 1`).Scan(&m.Name, &m.Version)
	if errors.Is(err, sql.ErrNoRows) {
		return m, false, nil
	} else if err != nil {
		return m, false, fmt.Errorf("read latest prediction: %w", err)
	}
	return m, true, nil
}

// PrimaryCounts are the primary's rollups for one model version.
type PrimaryCounts struct {
	Model, Version string
	Requests       int64
	Errors         int64 // predictions whose status is not ok
	CPUUS, CPURuns int64 // CPU time summed over the CPURuns runs that measured it
}

// PrimaryCounts returns the primary rollups of the whole minutes covering
// [from, to), per model version.
func (s *Snapshot) PrimaryCounts(ctx context.Context, from, to time.Time) ([]PrimaryCounts, error) {
	lo, hi := minuteRange(from, to)
	byRef := map[understudy.ModelRef]*PrimaryCounts{}
	for _, seg := range cover(lo, hi, rollupSpans) {
		err := s.each(ctx, `SELECT model, version, sum(requests), sum(errors), sum(cpu_us), sum(cpu_runs)
			FROM primary_rollups WHERE span = ? AND start >= ? AND start < ? GROUP BY model, version`,
			[]any{seg.span, seg.lo, seg.hi}, func(rows *sql.Rows) error {
				var p PrimaryCounts
				if err := rows.Scan(&p.Model, &p.Version, &p.Requests, &p.Errors, &p.CPUUS, &p.CPURuns); err != nil {
					return err
				}
				k := understudy.ModelRef{Name: p.Model, Version: p.Version}
				if q := byRef[k]; q != nil {
					q.Requests += p.Requests
					q.Errors += p.Errors
					q.CPUUS += p.CPUUS
					q.CPURuns += p.CPURuns
				} else {
					byRef[k] = &p
				}
				return nil
			})
		if err != nil {
			return nil, fmt.Errorf("read primary rollups: %w", err)
		}
	}
	out := make([]PrimaryCounts, 0, len(byRef))
	for _, p := range byRef {
		out = append(out, *p)
	}
	slices.SortFunc(out, func(a, b PrimaryCounts) int {
		return compareRefs(understudy.ModelRef{Name: a.Model, Version: a.Version}, understudy.ModelRef{Name: b.Model, Version: b.Version})
	})
	return out, nil
}

// each runs query and calls f for every row.
func (s *Snapshot) each(ctx context.Context, query string, args []any, f func(*sql.Rows) error) error {
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

// ShadowVersions returns every shadow version that has rollups, at any time.
func (s *Snapshot) ShadowVersions(ctx context.Context) ([]understudy.ModelRef, error) {
	// Skip from one (shadow, version) to the next along the primary key
	// instead of reading every minute.
	rows, err := s.tx.QueryContext(ctx, `WITH RECURSIVE v(shadow, version) AS (
			SELECT * FROM (SELECT shadow, version FROM shadow_rollups ORDER BY shadow, version LIMIT 1)
			UNION ALL
			SELECT (SELECT shadow FROM shadow_rollups m WHERE (m.shadow, m.version) > (v.shadow, v.version) ORDER BY shadow, version LIMIT 1),
			       (SELECT version FROM shadow_rollups m WHERE (m.shadow, m.version) > (v.shadow, v.version) ORDER BY shadow, version LIMIT 1)
			FROM v WHERE v.shadow IS NOT NULL)
		SELECT shadow, version FROM v WHERE shadow IS NOT NULL`)
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

// ShadowSpan returns the start of the first minute with shadow rollups for
// a shadow and version ("" for every one); ok is false when there is none.
func (s *Snapshot) ShadowSpan(ctx context.Context, shadow, version string) (first time.Time, ok bool, err error) {
	where, args := shadowWhere(shadow, version)
	var m sql.NullInt64
	if err := s.tx.QueryRowContext(ctx, `SELECT min(start) FROM shadow_rollups WHERE `+where+`span = 1`, args...).Scan(&m); err != nil {
		return time.Time{}, false, fmt.Errorf("read shadow span: %w", err)
	}
	if !m.Valid {
		return time.Time{}, false, nil
	}
	return time.Unix(m.Int64*60, 0).UTC(), true, nil
}

// RollupFilter selects shadow rollups. Shadow and Version "" select every
// one. [From, To) is widened to whole minutes; a zero From means from the
// first minute stored.
type RollupFilter struct {
	Shadow, Version string
	From, To        time.Time
	// Step, a whole number of minutes, cuts time into the series' steps,
	// aligned to multiples of Step since the Unix epoch (an hour starts on
	// the hour, a day at midnight UTC); 0 returns no series.
	Step time.Duration
}

// ShadowCounts are summed shadow rollups.
type ShadowCounts struct {
	Pairs, OK, Errors, Timeouts int64
	// ClassPairs are ok pairs with a class comparison, DisagreePairs those
	// with agreement < 1; ClassRows and AgreeRows count the rows of their
	// first class output.
	ClassPairs, DisagreePairs, ClassRows, AgreeRows int64
	// FloatPairs are ok pairs with a float comparison. SumAbs and SumSq
	// are Σ|Δ| and Σ|Δ|² over Elements elements (pairs written without an
	// element count are left out of those three).
	FloatPairs, Elements int64
	SumAbs, SumSq        float64
	MaxAbs               *float64
	CPUUS, CPURuns       int64
	// Diff counts per-pair max|Δ| of float pairs; Latency and
	// PrimaryLatency the two latencies (µs) of ok pairs.
	Diff, Latency, PrimaryLatency *store.Histogram
}

func newShadowCounts() ShadowCounts {
	return ShadowCounts{Diff: store.NewHistogram(store.DiffBuckets), Latency: store.NewHistogram(store.LatencyBuckets), PrimaryLatency: store.NewHistogram(store.LatencyBuckets)}
}

func (c *ShadowCounts) merge(o *ShadowCounts) {
	c.Pairs += o.Pairs
	c.OK += o.OK
	c.Errors += o.Errors
	c.Timeouts += o.Timeouts
	c.ClassPairs += o.ClassPairs
	c.DisagreePairs += o.DisagreePairs
	c.ClassRows += o.ClassRows
	c.AgreeRows += o.AgreeRows
	c.FloatPairs += o.FloatPairs
	c.Elements += o.Elements
	c.SumAbs += o.SumAbs
	c.SumSq += o.SumSq
	if o.MaxAbs != nil && (c.MaxAbs == nil || *o.MaxAbs > *c.MaxAbs) {
		m := *o.MaxAbs
		c.MaxAbs = &m
	}
	c.CPUUS += o.CPUUS
	c.CPURuns += o.CPURuns
	c.Diff.Merge(o.Diff)
	c.Latency.Merge(o.Latency)
	c.PrimaryLatency.Merge(o.PrimaryLatency)
}

func (c *ShadowCounts) add(o *rollupRow) error {
	c.Pairs += o.pairs
	c.OK += o.ok
	c.Errors += o.errors
	c.Timeouts += o.timeouts
	c.ClassPairs += o.classPairs
	c.DisagreePairs += o.disagreePairs
	c.ClassRows += o.classRows
	c.AgreeRows += o.agreeRows
	c.FloatPairs += o.floatPairs
	c.Elements += o.elements
	c.SumAbs += o.sumAbs
	c.SumSq += o.sumSq
	if o.maxAbs.Valid && (c.MaxAbs == nil || o.maxAbs.Float64 > *c.MaxAbs) {
		m := o.maxAbs.Float64
		c.MaxAbs = &m
	}
	c.CPUUS += o.cpuUS
	c.CPURuns += o.cpuRuns
	return errors.Join(c.Diff.AddEncoded(o.diff), c.Latency.AddEncoded(o.latency), c.PrimaryLatency.AddEncoded(o.primaryLatency))
}

// SeriesPoint is one step of a series.
type SeriesPoint struct {
	Start time.Time
	ShadowCounts
}

// ShadowSummary is the rollups of one shadow version.
type ShadowSummary struct {
	Shadow, Version string
	// Primaries are the primary versions it was compared with.
	Primaries []understudy.ModelRef
	Total     ShadowCounts
	// Series has the steps with data, oldest first.
	Series []SeriesPoint
}

type rollupRow struct {
	shadow, version, primary, primaryVersion        string
	start                                           int64
	pairs, ok, errors, timeouts                     int64
	classPairs, disagreePairs, classRows, agreeRows int64
	floatPairs, elements                            int64
	sumAbs, sumSq                                   float64
	maxAbs                                          sql.NullFloat64
	diff, latency, primaryLatency                   []byte
	cpuUS, cpuRuns                                  int64
}

// ShadowSummaries returns the rollups of each shadow version with data in
// the filter's window, by shadow and version.
func (s *Snapshot) ShadowSummaries(ctx context.Context, f RollupFilter) ([]ShadowSummary, error) {
	lo, hi := minuteRange(f.From, f.To)
	step := int64(f.Step / time.Minute)
	if f.Step > 0 {
		step = max(1, step)
	}
	type acc struct {
		sum       *ShadowSummary
		primaries map[understudy.ModelRef]bool
		steps     map[int64]*SeriesPoint
	}
	byKey := map[understudy.ModelRef]*acc{}
	var all []*acc
	var r rollupRow
	where, args := shadowWhere(f.Shadow, f.Version)
	for _, seg := range cover(lo, hi, spansFor(step)) {
		err := s.each(ctx, `SELECT shadow, version, start, primary_model, primary_version,
				pairs, ok, errors, timeouts, class_pairs, disagree_pairs, class_rows, agree_rows, float_pairs, elements,
				sum_abs, sum_sq, max_abs, diff_hist, latency_hist, primary_latency_hist, cpu_us, cpu_runs
			FROM shadow_rollups WHERE `+where+` span = ? AND start >= ? AND start < ?`, append(args, seg.span, seg.lo, seg.hi),
			func(rows *sql.Rows) error {
				if err := rows.Scan(&r.shadow, &r.version, &r.start, &r.primary, &r.primaryVersion,
					&r.pairs, &r.ok, &r.errors, &r.timeouts, &r.classPairs, &r.disagreePairs, &r.classRows, &r.agreeRows, &r.floatPairs, &r.elements,
					&r.sumAbs, &r.sumSq, &r.maxAbs, &r.diff, &r.latency, &r.primaryLatency, &r.cpuUS, &r.cpuRuns); err != nil {
					return err
				}
				k := understudy.ModelRef{Name: r.shadow, Version: r.version}
				a := byKey[k]
				if a == nil {
					a = &acc{sum: &ShadowSummary{Shadow: r.shadow, Version: r.version, Total: newShadowCounts()},
						primaries: map[understudy.ModelRef]bool{}, steps: map[int64]*SeriesPoint{}}
					byKey[k] = a
					all = append(all, a)
				}
				a.primaries[understudy.ModelRef{Name: r.primary, Version: r.primaryVersion}] = true
				if step == 0 {
					return a.sum.Total.add(&r)
				}
				// Each row is decoded once, into its step; the total is the
				// sum of the steps.
				start := floorDiv(r.start, step) * step
				p := a.steps[start]
				if p == nil {
					p = &SeriesPoint{Start: time.Unix(start*60, 0).UTC(), ShadowCounts: newShadowCounts()}
					a.steps[start] = p
				}
				return p.add(&r)
			})
		if err != nil {
			return nil, fmt.Errorf("read shadow rollups: %w", err)
		}
	}
	out := make([]ShadowSummary, 0, len(all))
	for _, a := range all {
		sm := a.sum
		for p := range a.primaries {
			sm.Primaries = append(sm.Primaries, p)
		}
		slices.SortFunc(sm.Primaries, compareRefs)
		for _, p := range a.steps {
			sm.Series = append(sm.Series, *p)
		}
		// Summed in time order, so that the same rows always give the same
		// floating-point sums.
		slices.SortFunc(sm.Series, func(a, b SeriesPoint) int { return a.Start.Compare(b.Start) })
		for i := range sm.Series {
			sm.Total.merge(&sm.Series[i].ShadowCounts)
		}
		out = append(out, *sm)
	}
	slices.SortFunc(out, func(a, b ShadowSummary) int {
		return compareRefs(understudy.ModelRef{Name: a.Shadow, Version: a.Version}, understudy.ModelRef{Name: b.Shadow, Version: b.Version})
	})
	return out, nil
}

func compareRefs(a, b understudy.ModelRef) int {
	return cmp.Or(strings.Compare(a.Name, b.Name), strings.Compare(a.Version, b.Version))
}

// shadowWhere returns the conditions selecting a shadow and version, each
// only when given, ending in AND so that more can follow.
func shadowWhere(shadow, version string) (string, []any) {
	var w strings.Builder
	var args []any
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

// ConfusionCell counts rows with one pair of predicted classes.
type ConfusionCell struct {
	Primary, Shadow int64
	N               int64
}

// Confusion returns the class rollups of a shadow version over the whole
// minutes covering [from, to), by primary class and shadow class.
func (s *Snapshot) Confusion(ctx context.Context, shadow, version string, from, to time.Time) ([]ConfusionCell, error) {
	lo, hi := minuteRange(from, to)
	cells := map[[2]int64]int64{}
	for _, seg := range cover(lo, hi, rollupSpans) {
		err := s.each(ctx, `SELECT primary_class, shadow_class, sum(n) FROM confusion_rollups
			WHERE shadow = ? AND version = ? AND span = ? AND start >= ? AND start < ?
			GROUP BY primary_class, shadow_class`, []any{shadow, version, seg.span, seg.lo, seg.hi},
			func(rows *sql.Rows) error {
				var c ConfusionCell
				if err := rows.Scan(&c.Primary, &c.Shadow, &c.N); err != nil {
					return err
				}
				cells[[2]int64{c.Primary, c.Shadow}] += c.N
				return nil
			})
		if err != nil {
			return nil, fmt.Errorf("read confusion: %w", err)
		}
	}
	out := make([]ConfusionCell, 0, len(cells))
	for k, n := range cells {
		out = append(out, ConfusionCell{Primary: k[0], Shadow: k[1], N: n})
	}
	slices.SortFunc(out, func(a, b ConfusionCell) int {
		return cmp.Or(cmp.Compare(a.Primary, b.Primary), cmp.Compare(a.Shadow, b.Shadow))
	})
	return out, nil
}

// SkipCounts returns a shadow version's sampled-out and dropped jobs over
// the whole minutes covering [from, to).
func (s *Snapshot) SkipCounts(ctx context.Context, shadow, version string, from, to time.Time) (sampledOut, dropped int64, err error) {
	lo, hi := minuteRange(from, to)
	err = s.tx.QueryRowContext(ctx, `SELECT coalesce(sum(sampled_out), 0), coalesce(sum(dropped), 0) FROM shadow_skips
		WHERE shadow = ? AND version = ? AND minute >= ? AND minute < ?`, shadow, version, lo, hi).Scan(&sampledOut, &dropped)
	if err != nil {
		return 0, 0, fmt.Errorf("read skips of %q: %w", shadow, err)
	}
	return sampledOut, dropped, nil
}

// PairSamples are raw values of a shadow version's pairs.
type PairSamples struct {
	// Latency and PrimaryLatency are the two latencies (µs) of ok pairs;
	// PrimaryLatency leaves out pairs stored without it.
	Latency, PrimaryLatency []float64
	// MaxAbsDiff are the per-pair max|Δ| of ok float pairs.
	MaxAbsDiff []float64
}

// PairSamples reads the latencies and differences of every pair of a
// shadow version in [from, to); it reads every row, so use it for windows
// of a few hundred thousand pairs at most.
func (s *Snapshot) PairSamples(ctx context.Context, shadow, version string, from, to time.Time) (*PairSamples, error) {
	lo, hi := microRange(from, to)
	rows, err := s.tx.QueryContext(ctx, `SELECT latency_us, primary_latency_us, max_abs_diff FROM shadow_results
		WHERE shadow = ? AND version = ? AND time_us >= ? AND time_us < ? AND status = 'ok'`, shadow, version, lo, hi)
	if err != nil {
		return nil, fmt.Errorf("read pair samples: %w", err)
	}
	defer rows.Close()
	var out PairSamples
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

// Scores returns the primary and shadow top scores of the newest limit ok
// pairs of a shadow version in [from, to) that have both.
func (s *Snapshot) Scores(ctx context.Context, shadow, version string, from, to time.Time, limit int) (primary, shadowScores []float64, err error) {
	lo, hi := microRange(from, to)
	rows, err := s.tx.QueryContext(ctx, `SELECT primary_score, shadow_score FROM shadow_results
		WHERE shadow = ? AND version = ? AND time_us >= ? AND time_us < ? AND status = 'ok'
			AND primary_score IS NOT NULL AND shadow_score IS NOT NULL
		ORDER BY time_us DESC LIMIT ?`, shadow, version, lo, hi, limit)
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

// AccuracyCounts compare a shadow version with the primary on labelled
// requests whose shadow run is ok.
type AccuracyCounts struct {
	Labelled int64
	// NonIntegral counts labels that are not whole numbers, and NoClass
	// pairs without both predicted classes.
	NonIntegral, NoClass int64
	// Against the first row's class: correct answers of each, and
	// B (primary right, shadow wrong) and C (primary wrong, shadow right).
	PrimaryCorrect, ShadowCorrect, B, C int64
	// Against the first row's top score, over the Scored pairs that have
	// both: the summed absolute errors, and how often each was strictly
	// closer to the label.
	Scored                      int64
	PrimaryAbsErr, ShadowAbsErr float64
	PrimaryCloser, ShadowCloser int64
}

// Accuracy returns the labelled comparison of a shadow version over the
// requests whose prediction time is in [from, to) (the pair's time is a
// moment later). Its cost grows with the labelled requests in the window,
// not with all requests: it walks the partial index of labelled
// predictions by time.
func (s *Snapshot) Accuracy(ctx context.Context, shadow, version string, from, to time.Time) (AccuracyCounts, error) {
	lo, hi := microRange(from, to)
	var a AccuracyCounts
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
		WHERE p.label IS NOT NULL AND p.time_us >= ? AND p.time_us < ? AND s.status = 'ok'`,
		shadow, version, lo, hi).Scan(&a.Labelled, &a.NonIntegral, &a.NoClass, &a.PrimaryCorrect, &a.ShadowCorrect, &a.B, &a.C,
		&a.Scored, &a.PrimaryAbsErr, &a.ShadowAbsErr, &a.PrimaryCloser, &a.ShadowCloser)
	if err != nil {
		return a, fmt.Errorf("read accuracy of %q: %w", shadow, err)
	}
	return a, nil
}

// OutputNames returns the names of the first class output and the first
// float output of a shadow version's newest ok pair in [from, to), the
// outputs its headline comparison fields come from.
func (s *Snapshot) OutputNames(ctx context.Context, shadow, version string, from, to time.Time) (class, float string, err error) {
	lo, hi := microRange(from, to)
	var raw []byte
	err = s.tx.QueryRowContext(ctx, `SELECT comparison FROM shadow_results
		WHERE shadow = ? AND version = ? AND time_us >= ? AND time_us < ? AND status = 'ok'
		ORDER BY time_us DESC LIMIT 1`, shadow, version, lo, hi).Scan(&raw)
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
