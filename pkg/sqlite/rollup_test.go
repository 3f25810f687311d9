package sqlite_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/pressly/goose/v3"

	"github.com/understudy-ml/understudy/migrations"
	"github.com/understudy-ml/understudy/pkg/sqlite"
	"github.com/understudy-ml/understudy/pkg/store"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// generated is what a rollup test wrote, to recount from.
type generated struct {
	preds []*understudy.Prediction
	runs  []*understudy.ShadowResult
}

// generate writes n requests over three days starting at start, each
// mirrored to "a" (a classifier whose batches have three rows) and every
// third to "b" (no class output), through a writer that commits every 7
// rows so that rollups are merged many times.
func generate(t *testing.T, db *sqlite.DB, n int, start time.Time) *generated {
	t.Helper()
	rng := rand.New(rand.NewPCG(5, 6))
	g := &generated{}
	for i := range n {
		at := start.Add(time.Duration(rng.Int64N(int64(72 * time.Hour))))
		pv := "p1"
		if at.Sub(start) > 40*time.Hour {
			pv = "p2"
		}
		p := &understudy.Prediction{ID: fmt.Sprint("q", i), Time: at, Model: "m", Version: pv, Status: understudy.StatusOK,
			Latency: time.Duration(50+rng.IntN(5000)) * time.Microsecond}
		if rng.IntN(50) == 0 {
			p.Status, p.Error = understudy.StatusError, "failed"
		}
		if rng.IntN(3) > 0 {
			p.CPU = time.Duration(10+rng.IntN(900)) * time.Microsecond
		}
		g.preds = append(g.preds, p)
		db.WritePrediction(p)
		if p.Status != understudy.StatusOK {
			continue
		}
		shadows := []string{"a"}
		if i%3 == 0 {
			shadows = append(shadows, "b")
		}
		for _, name := range shadows {
			r := &understudy.ShadowResult{RequestID: p.ID, Time: at.Add(time.Duration(rng.IntN(3000)) * time.Millisecond),
				Shadow: name, Version: "v", Primary: p.Model, PrimaryVersion: pv, PrimaryLatency: p.Latency,
				Latency: time.Duration(50+rng.IntN(8000)) * time.Microsecond, Status: understudy.StatusOK}
			if rng.IntN(4) > 0 {
				r.CPU = time.Duration(10+rng.IntN(900)) * time.Microsecond
			}
			switch rng.IntN(40) {
			case 0:
				r.Status, r.Error = understudy.StatusError, "boom"
			case 1:
				r.Status, r.Error = understudy.StatusTimeout, "slow"
			}
			if r.Status == understudy.StatusOK {
				r.Compare = randomComparison(rng, name == "a", i)
			}
			g.runs = append(g.runs, r)
			db.WriteShadowResult(r)
		}
	}
	if err := db.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := db.Stats(); st.Predictions.Lost+st.ShadowResults.Lost > 0 {
		t.Fatalf("lost rows: %+v", st)
	}
	return g
}

func randomComparison(rng *rand.Rand, classifier bool, i int) understudy.Comparison {
	var c understudy.Comparison
	if classifier {
		if i%11 == 0 {
			// A comparison without its per-output detail counts as one row.
			pc, sc := int64(rng.IntN(3)), int64(rng.IntN(3))
			a := 0.0
			if pc == sc {
				a = 1
			}
			c.Agreement, c.PrimaryClass, c.ShadowClass = &a, &pc, &sc
		} else {
			oc := understudy.OutputComparison{Name: "label", Kind: understudy.KindClass, Rows: 3}
			for range 3 {
				pc := int64(rng.IntN(4))
				sc := pc
				if rng.IntN(8) == 0 {
					sc = int64(rng.IntN(4))
				}
				oc.PrimaryClasses, oc.ShadowClasses = append(oc.PrimaryClasses, pc), append(oc.ShadowClasses, sc)
				if pc == sc {
					oc.Agree++
				}
			}
			a := float64(oc.Agree) / 3
			c.Outputs = append(c.Outputs, oc)
			c.Agreement, c.PrimaryClass, c.ShadowClass = &a, &oc.PrimaryClasses[0], &oc.ShadowClasses[0]
		}
	}
	n := 1 + rng.IntN(5)
	var sum, sq, mx float64
	for range n {
		d := math.Pow(10, -9+8*rng.Float64())
		if rng.IntN(10) == 0 {
			d = 0
		}
		sum, sq, mx = sum+d, sq+d*d, math.Max(mx, d)
	}
	mean := sum / float64(n)
	ps, ss := rng.Float64(), rng.Float64()
	c.MaxAbsDiff, c.MeanAbsDiff, c.SumSqDiff, c.Elements, c.PrimaryScore, c.ShadowScore = &mx, &mean, &sq, n, &ps, &ss
	return c
}

// recount sums the runs of a shadow in [from, to) (zero: open) the way the
// rollups should, from the values handed to the store.
func (g *generated) recount(shadow string, from, to time.Time) (store.ShadowCounts, map[[2]int64]int64) {
	c := store.ShadowCounts{Diff: store.NewHistogram(store.DiffBuckets), Latency: store.NewHistogram(store.LatencyBuckets),
		PrimaryLatency: store.NewHistogram(store.LatencyBuckets)}
	cells := map[[2]int64]int64{}
	for _, r := range g.runs {
		if r.Shadow != shadow || (!from.IsZero() && r.Time.Before(from)) || (!to.IsZero() && !r.Time.Before(to)) {
			continue
		}
		c.Pairs++
		if r.CPU > 0 {
			c.CPUUS += r.CPU.Microseconds()
			c.CPURuns++
		}
		switch r.Status {
		case understudy.StatusError:
			c.Errors++
			continue
		case understudy.StatusTimeout:
			c.Timeouts++
			continue
		}
		c.OK++
		c.Latency.Add(float64(r.Latency.Microseconds()))
		c.PrimaryLatency.Add(float64(r.PrimaryLatency.Microseconds()))
		cmp := &r.Compare
		if cmp.Agreement != nil {
			c.ClassPairs++
			if *cmp.Agreement < 1 {
				c.DisagreePairs++
			}
			if len(cmp.Outputs) > 0 {
				o := cmp.Outputs[0]
				c.ClassRows += int64(o.Rows)
				c.AgreeRows += int64(o.Agree)
				for i := range o.PrimaryClasses {
					cells[[2]int64{o.PrimaryClasses[i], o.ShadowClasses[i]}]++
				}
			} else {
				c.ClassRows++
				if *cmp.Agreement == 1 {
					c.AgreeRows++
				}
				cells[[2]int64{*cmp.PrimaryClass, *cmp.ShadowClass}]++
			}
		}
		if cmp.MaxAbsDiff != nil {
			c.FloatPairs++
			c.Elements += int64(cmp.Elements)
			c.SumAbs += *cmp.MeanAbsDiff * float64(cmp.Elements)
			c.SumSq += *cmp.SumSqDiff
			if c.MaxAbs == nil || *cmp.MaxAbsDiff > *c.MaxAbs {
				c.MaxAbs = ptr(*cmp.MaxAbsDiff)
			}
			c.Diff.Add(*cmp.MaxAbsDiff)
		}
	}
	return c, cells
}

func ptr[T any](v T) *T { return &v }

func assertEqual[T comparable](tb testing.TB, name string, got, want T) {
	tb.Helper()
	if got != want {
		tb.Errorf("%s = %v, want %v", name, got, want)
	}
}

func assertCounts(t *testing.T, got, want *store.ShadowCounts) {
	t.Helper()
	for _, f := range []struct {
		name      string
		got, want int64
	}{
		{"Pairs", got.Pairs, want.Pairs}, {"OK", got.OK, want.OK}, {"Errors", got.Errors, want.Errors},
		{"Timeouts", got.Timeouts, want.Timeouts}, {"ClassPairs", got.ClassPairs, want.ClassPairs},
		{"DisagreePairs", got.DisagreePairs, want.DisagreePairs}, {"ClassRows", got.ClassRows, want.ClassRows},
		{"AgreeRows", got.AgreeRows, want.AgreeRows}, {"FloatPairs", got.FloatPairs, want.FloatPairs},
		{"Elements", got.Elements, want.Elements}, {"CPUUS", got.CPUUS, want.CPUUS}, {"CPURuns", got.CPURuns, want.CPURuns},
	} {
		assertEqual(t, f.name, f.got, f.want)
	}
	for _, f := range []struct {
		name      string
		got, want float64
	}{{"SumAbs", got.SumAbs, want.SumAbs}, {"SumSq", got.SumSq, want.SumSq}} {
		if math.Abs(f.got-f.want) > 1e-12*math.Abs(f.want) {
			t.Errorf("%s = %.17g, want %.17g", f.name, f.got, f.want)
		}
	}
	assertEqual(t, "MaxAbs", fmt.Sprint(deref(got.MaxAbs)), fmt.Sprint(deref(want.MaxAbs)))
	for _, h := range []struct {
		name      string
		got, want *store.Histogram
	}{{"Diff", got.Diff, want.Diff}, {"Latency", got.Latency, want.Latency}, {"PrimaryLatency", got.PrimaryLatency, want.PrimaryLatency}} {
		assertEqual(t, h.name+".Total", h.got.Total, h.want.Total)
		if !slices.Equal(h.got.Counts, h.want.Counts) {
			t.Errorf("%s counts differ from the recount", h.name)
		}
	}
}

func deref(f *float64) any {
	if f == nil {
		return nil
	}
	return *f
}

// Ensure the rollups the writer keeps, merged over many small batches and
// read back as days, hours and minutes, equal a recount of the values
// written, for windows whose edges cut through days and hours, and that
// every series step equals a recount of its own span.
func TestRollupsMatchRaw(t *testing.T) {
	t.Run("one thread", func(t *testing.T) { testRollupsMatchRaw(t, sqlite.Options{BatchSize: 7}) })
	// Shadow results committed apart, on a thread of their own.
	t.Run("shadow thread", func(t *testing.T) { testRollupsMatchRaw(t, sqlite.Options{BatchSize: 7, ShadowNice: 10}) })
}

func testRollupsMatchRaw(t *testing.T, opts sqlite.Options) {
	db, _ := openDB(t, opts)
	start := time.Date(2030, 5, 1, 17, 23, 11, 0, time.UTC)
	g := generate(t, db, 3000, start)
	ctx := context.Background()
	s, err := db.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	day := time.Date(2030, 5, 2, 0, 0, 0, 0, time.UTC)
	windows := []struct{ from, to time.Time }{
		{time.Time{}, time.Time{}},
		{day, day.Add(24 * time.Hour)},
		{day.Add(-37 * time.Minute), day.Add(49*time.Hour + 13*time.Minute)},
		{day.Add(23*time.Hour + 59*time.Minute), day.Add(24*time.Hour + time.Minute)},
		{day.Add(5 * time.Hour), day.Add(5 * time.Hour)},
		{start.Truncate(time.Minute), start.Add(time.Hour)},
	}
	for _, w := range windows {
		for _, step := range []time.Duration{0, time.Minute, 15 * time.Minute, time.Hour, 6 * time.Hour, 24 * time.Hour, 7 * 24 * time.Hour} {
			name := fmt.Sprintf("[%s, %s) step %v", w.from.Format("02 15:04"), w.to.Format("02 15:04"), step)
			t.Run(name, func(t *testing.T) {
				sums, err := s.ShadowSummaries(ctx, store.RollupFilter{From: w.from, To: w.to, Step: step})
				if err != nil {
					t.Fatal(err)
				}
				for _, shadow := range []string{"a", "b"} {
					want, cells := g.recount(shadow, w.from, w.to)
					i := slices.IndexFunc(sums, func(s store.ShadowSummary) bool { return s.Shadow == shadow })
					if want.Pairs == 0 {
						if i >= 0 {
							t.Errorf("%s: a summary for an empty window", shadow)
						}
						continue
					}
					if i < 0 {
						t.Fatalf("%s: no summary", shadow)
					}
					sum := sums[i]
					assertCounts(t, &sum.Total, &want)
					for _, p := range sum.Series {
						stepWant, _ := g.recount(shadow, maxTime(p.Start, w.from), minTime(p.Start.Add(step), w.to))
						assertCounts(t, &p.ShadowCounts, &stepWant)
					}
					if step == 0 {
						assertEqual(t, "series without a step", len(sum.Series), 0)
					}
					got, err := s.Confusion(ctx, shadow, "v", w.from, w.to)
					if err != nil {
						t.Fatal(err)
					}
					gotCells := map[[2]int64]int64{}
					for _, c := range got {
						gotCells[[2]int64{c.Primary, c.Shadow}] = c.N
					}
					assertEqual(t, "confusion", fmt.Sprint(gotCells), fmt.Sprint(cells))
				}

				prims, err := s.PrimaryCounts(ctx, w.from, w.to)
				if err != nil {
					t.Fatal(err)
				}
				want := map[string]store.PrimaryCounts{}
				for _, p := range g.preds {
					if (!w.from.IsZero() && p.Time.Before(w.from)) || (!w.to.IsZero() && !p.Time.Before(w.to)) {
						continue
					}
					c := want[p.Version]
					c.Model, c.Version = p.Model, p.Version
					c.Requests++
					if p.Status != understudy.StatusOK {
						c.Errors++
					}
					if p.CPU > 0 {
						c.CPUUS += p.CPU.Microseconds()
						c.CPURuns++
					}
					want[p.Version] = c
				}
				gotPrims := map[string]store.PrimaryCounts{}
				for _, p := range prims {
					gotPrims[p.Version] = p
				}
				assertEqual(t, "primary counts", fmt.Sprint(gotPrims), fmt.Sprint(want))
			})
		}
	}
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func minTime(a, b time.Time) time.Time {
	if !b.IsZero() && b.Before(a) {
		return b
	}
	return a
}

// Ensure the searches for disagreements and for the largest |Δ| return the
// same pairs as sorting every stored pair, for any window and limit, with
// and without class outputs.
func TestPairsSearch(t *testing.T) {
	db, _ := openDB(t, sqlite.Options{})
	start := time.Date(2030, 5, 1, 17, 23, 11, 0, time.UTC)
	g := generate(t, db, 3000, start)
	ctx := context.Background()
	day := time.Date(2030, 5, 2, 0, 0, 0, 0, time.UTC)
	const tol = 1e-4
	for _, w := range []struct{ from, to time.Time }{
		{time.Time{}, time.Time{}},
		{day.Add(-37*time.Minute - 5*time.Second), day.Add(49*time.Hour + 13*time.Minute)},
		{day.Add(3 * time.Hour), day.Add(3*time.Hour + 20*time.Minute)},
	} {
		for _, shadow := range []string{"a", "b", ""} {
			var in []*understudy.ShadowResult
			for _, r := range g.runs {
				if (shadow == "" || r.Shadow == shadow) && (w.from.IsZero() || !r.Time.Before(w.from)) && (w.to.IsZero() || r.Time.Before(w.to)) {
					in = append(in, r)
				}
			}
			for _, limit := range []int{1, 20, 5000} {
				name := fmt.Sprintf("%s [%s, %s) limit %d", shadow, w.from.Format("02 15:04:05"), w.to.Format("02 15:04"), limit)
				t.Run(name, func(t *testing.T) {
					// Newest disagreements: ties in time cannot happen.
					var want []string
					byTime := slices.Clone(in)
					slices.SortFunc(byTime, func(a, b *understudy.ShadowResult) int { return b.Time.Compare(a.Time) })
					for _, r := range byTime {
						c := &r.Compare
						if r.Status != understudy.StatusOK || (c.Agreement != nil && *c.Agreement < 1) ||
							(c.Agreement == nil && c.MaxAbsDiff != nil && *c.MaxAbsDiff > tol) {
							want = append(want, r.Shadow+"/"+r.RequestID)
						}
					}
					got, err := pairs(ctx, db, store.PairFilter{Shadow: shadow, Since: w.from, Until: w.to, DisagreeOnly: true, Tolerance: tol, Limit: limit})
					if err != nil {
						t.Fatal(err)
					}
					assertEqual(t, "disagreements", fmt.Sprint(keys(got)), fmt.Sprint(want[:min(limit, len(want))]))

					// Largest |Δ|: compared by value, as which of equal
					// values comes first is unspecified.
					var diffs []float64
					for _, r := range in {
						if r.Compare.MaxAbsDiff != nil {
							diffs = append(diffs, *r.Compare.MaxAbsDiff)
						}
					}
					slices.SortFunc(diffs, func(a, b float64) int { return -cmpFloat(a, b) })
					got, err = pairs(ctx, db, store.PairFilter{Shadow: shadow, Since: w.from, Until: w.to, Order: store.ByDiff, Limit: limit})
					if err != nil {
						t.Fatal(err)
					}
					var gotDiffs []float64
					for _, p := range got {
						gotDiffs = append(gotDiffs, *p.MaxAbsDiff)
					}
					assertEqual(t, "largest", fmt.Sprint(gotDiffs), fmt.Sprint(diffs[:min(limit, len(diffs))]))
				})
			}
		}
	}
}

// pairs reads the pairs f selects through a snapshot of their own.
func pairs(ctx context.Context, db *sqlite.DB, f store.PairFilter) ([]store.PairRecord, error) {
	s, err := db.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	return s.Pairs(ctx, f)
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func keys(ps []store.PairRecord) []string {
	out := []string{}
	for _, p := range ps {
		out = append(out, p.Shadow+"/"+p.RequestID)
	}
	return out
}

// Ensure retention removes the rollups of the spans that ended before what
// it keeps and leaves those that straddle it whole.
func TestRetentionTrimsRollups(t *testing.T) {
	now := time.Date(2030, 5, 10, 12, 30, 0, 0, time.UTC)
	db, _ := openDB(t, sqlite.Options{RetainDays: 2, Now: func() time.Time { return now }})
	ctx := context.Background()
	for i, at := range []time.Time{now.Add(-72 * time.Hour), now.Add(-49 * time.Hour), now.Add(-time.Hour)} {
		p, s := sqlite.SamplePair(fmt.Sprint(i), at)
		s.Time = at
		db.WritePrediction(p)
		db.WriteShadowResult(s)
	}
	if err := db.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ApplyRetention(ctx, store.Retention{Days: 2, Now: now}); err != nil {
		t.Fatal(err)
	}
	// The cutoff is 2030-05-08 12:30, inside the day of −49 h: that day
	// stays whole in every span, so that the minute, hour and day rollups
	// still add up to the same counts; the day of −72 h goes.
	w := db.WritePool()
	for _, tt := range []struct {
		span int
		want int64
	}{{1, 2}, {60, 2}, {1440, 2}} {
		assertEqual(t, fmt.Sprintf("shadow rollups of span %d", tt.span),
			queryInt(t, w, `SELECT count(*) FROM shadow_rollups WHERE span = ?`, tt.span), tt.want)
		assertEqual(t, fmt.Sprintf("primary rollups of span %d", tt.span),
			queryInt(t, w, `SELECT count(*) FROM primary_rollups WHERE span = ?`, tt.span), tt.want)
		assertEqual(t, fmt.Sprintf("confusion rollups of span %d", tt.span),
			queryInt(t, w, `SELECT count(*) FROM confusion_rollups WHERE span = ?`, tt.span), tt.want)
	}
	// Readers pick the span by window; every span must tell the same story.
	for _, q := range []string{
		`SELECT coalesce(sum(pairs), 0) FROM shadow_rollups WHERE span = ?`,
		`SELECT coalesce(sum(n), 0) FROM confusion_rollups WHERE span = ?`,
		`SELECT coalesce(sum(requests), 0) FROM primary_rollups WHERE span = ?`,
	} {
		day := queryInt(t, w, q, 1440)
		for _, span := range []int{1, 60} {
			assertEqual(t, fmt.Sprintf("%s, span %d against days", q, span), queryInt(t, w, q, span), day)
		}
	}
}

// Ensure the report migration can be rolled back and applied again.
func TestReportMigrationDown(t *testing.T) {
	db, _ := openDB(t, sqlite.Options{})
	p, s := sqlite.SamplePair("x", time.Now())
	db.WritePrediction(p)
	db.WriteShadowResult(s)
	ctx := context.Background()
	if err := db.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	prov, err := goose.NewProvider(goose.DialectSQLite3, db.WritePool(), migrations.FS, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := prov.DownTo(ctx, 2); err != nil {
		t.Fatalf("down: %v", err)
	}
	assertEqual(t, "rollup tables after down", queryInt(t, db.WritePool(), `SELECT count(*) FROM sqlite_master WHERE name LIKE '%rollups'`), 0)
	if _, err := prov.Up(ctx); err != nil {
		t.Fatalf("up: %v", err)
	}
	assertEqual(t, "rows kept", queryInt(t, db.WritePool(), `SELECT count(*) FROM shadow_results`), 1)
}

// Ensure a model's memory is stored and kept when a later sighting does not
// know it.
func TestRecordModelMemory(t *testing.T) {
	db, _ := openDB(t, sqlite.Options{})
	ctx := context.Background()
	m := understudy.ModelInfo{Name: "m", Version: "1", SHA256: "x", File: "m.onnx", Size: 10, MemoryBytes: 4096}
	if err := db.RecordModel(ctx, m); err != nil {
		t.Fatal(err)
	}
	m.MemoryBytes = 0
	if err := db.RecordModel(ctx, m); err != nil {
		t.Fatal(err)
	}
	got, err := db.Models(ctx)
	if err != nil {
		t.Fatal(err)
	}
	assertEqual(t, "MemoryBytes", got[0].MemoryBytes, 4096)
}
