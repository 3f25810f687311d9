package reporttest

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/understudy-ml/understudy/pkg/report"
	"github.com/understudy-ml/understudy/pkg/stats"
	"github.com/understudy-ml/understudy/pkg/store/storetest"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// now is the clock of the report tests: with the window 1h the report
// covers [11:00, 12:01).
var now = time.Date(2030, 3, 10, 12, 0, 30, 0, time.UTC)

// scenario is 40 requests in the last hour, two of them failed, with two
// shadows: s1, a classifier run on every successful request (2 errors, 1
// timeout, 6 disagreeing classes), and s2, a regression model run on the
// even ones (the odd ones sampled out). 13 requests are labelled. One
// request just before the window and one just after it carry extreme
// values that must not show anywhere.
func scenario() (reqs []*req, runs []*run) {
	from := now.Add(-time.Hour).Truncate(time.Minute)
	labelled := []int{0, 1, 2, 4, 5, 9, 10, 11, 13, 14, 16, 17, 19}
	for i := range 40 {
		r := &req{id: fmt.Sprintf("r%02d", i), at: from.Add(30*time.Second + time.Duration(i)*85*time.Second),
			model: "iris", version: "pv1", failed: i == 7 || i == 23, class: int64(i % 3),
			probs:   []float32{0.2 + 0.01*float32(i%5), 0.3, 0.5 - 0.01*float32(i%5)},
			value:   1.5 + 0.25*float32(i),
			latency: time.Duration(200+(i*37)%101) * time.Microsecond}
		r.cpu = r.latency - 20*time.Microsecond
		if slices.Contains(labelled, i) {
			l := float64(r.class)
			if i == 1 || i == 5 || i == 9 {
				l = float64((r.class + 1) % 3)
			}
			r.label = &l
		}
		reqs = append(reqs, r)
		if r.failed {
			continue
		}
		s1 := &run{req: r, shadow: "s1", version: "v1", at: r.at.Add(2 * time.Second), status: understudy.StatusOK,
			class: r.class, probs: slices.Clone(r.probs), latency: time.Duration(300+(i*53)%211) * time.Microsecond}
		s1.cpu = s1.latency - 30*time.Microsecond
		s1.probs[1] += float32(math.Ldexp(1, -(i%12 + 3)))
		switch i {
		case 11, 29:
			s1.status = understudy.StatusError
		case 35:
			s1.status = understudy.StatusTimeout
		case 1, 5, 14, 18, 26, 33:
			s1.class = (r.class + 1) % 3
		}
		runs = append(runs, s1)
		if i%2 == 0 {
			runs = append(runs, &run{req: r, shadow: "s2", version: "v2", at: r.at.Add(time.Second), status: understudy.StatusOK,
				value: r.value + 0.0625*float32(i%5) - 0.1, latency: time.Duration(150+(i*17)%61) * time.Microsecond})
		}
	}
	for _, at := range []time.Time{from.Add(-time.Microsecond), now.Truncate(time.Minute).Add(time.Minute)} {
		r := &req{id: "outside-" + at.Format("150405"), at: at, model: "iris", version: "pv1", class: 2,
			probs: []float32{0.9, 0.05, 0.05}, value: 1000, latency: 90 * time.Millisecond, cpu: 80 * time.Millisecond, label: ptr(0.0)}
		reqs = append(reqs, r)
		runs = append(runs,
			&run{req: r, shadow: "s1", version: "v1", at: at, status: understudy.StatusOK, class: 0, probs: []float32{0, 0, 1},
				latency: 900 * time.Millisecond, cpu: 800 * time.Millisecond},
			&run{req: r, shadow: "s2", version: "v2", at: at, status: understudy.StatusOK, value: -1000, latency: 900 * time.Millisecond})
	}
	return reqs, runs
}

// expectation is what the report must say about one shadow, computed from
// the raw values without the report's code.
type expectation struct {
	requests, primaryErrors             int64
	mirrored, ok, errors, timeouts      int64
	classRows, agree                    int64
	classes                             []int64
	confusion                           [][]int64
	elements                            []float64 // primary elements, then shadow's
	shadowElements                      []float64
	pairDiffs                           []float64
	primaryLat, shadowLat               []float64
	primaryScores, shadowScores         []float64
	primaryCPU, shadowCPU               []float64
	labelled                            int64
	numeric                             bool
	primaryCorrect, shadowCorrect, b, c int64
	primaryAbsErr, shadowAbsErr         float64
	disagreements                       []*run
	floatRuns                           []*run
}

func expect(reqs []*req, runs []*run, shadow string, from, to time.Time) *expectation {
	in := func(t time.Time) bool { return !t.Before(from) && t.Before(to) }
	e := &expectation{}
	for _, r := range reqs {
		if in(r.at) {
			e.requests++
			if r.failed {
				e.primaryErrors++
			}
			if r.cpu > 0 {
				e.primaryCPU = append(e.primaryCPU, float64(r.cpu.Microseconds()))
			}
		}
	}
	cells := map[[2]int64]int64{}
	for _, r := range runs {
		if r.shadow != shadow || !in(r.at) {
			continue
		}
		e.mirrored++
		if r.cpu > 0 {
			e.shadowCPU = append(e.shadowCPU, float64(r.cpu.Microseconds()))
		}
		switch r.status {
		case understudy.StatusError:
			e.errors++
			e.disagreements = append(e.disagreements, r)
			continue
		case understudy.StatusTimeout:
			e.timeouts++
			e.disagreements = append(e.disagreements, r)
			continue
		}
		e.ok++
		e.primaryLat = append(e.primaryLat, float64(r.req.latency.Microseconds()))
		e.shadowLat = append(e.shadowLat, float64(r.latency.Microseconds()))
		a, b := diffs(r)
		e.elements, e.shadowElements = append(e.elements, a...), append(e.shadowElements, b...)
		e.pairDiffs = append(e.pairDiffs, maxAbs(a, b))
		e.floatRuns = append(e.floatRuns, r)
		ps, ss := topScores(r)
		e.primaryScores, e.shadowScores = append(e.primaryScores, ps), append(e.shadowScores, ss)
		if r.probs != nil {
			e.classRows++
			cells[[2]int64{r.req.class, r.class}]++
			if r.class == r.req.class {
				e.agree++
			} else {
				e.disagreements = append(e.disagreements, r)
			}
		}
		if l := r.req.label; l != nil && in(r.req.at) {
			e.labelled++
			if r.probs != nil {
				pr, sr := float64(r.req.class) == *l, float64(r.class) == *l
				e.primaryCorrect += b2i(pr)
				e.shadowCorrect += b2i(sr)
				e.b += b2i(pr && !sr)
				e.c += b2i(!pr && sr)
			} else {
				e.numeric = true
				pe, se := math.Abs(float64(r.req.value)-*l), math.Abs(float64(r.value)-*l)
				e.primaryAbsErr += pe
				e.shadowAbsErr += se
				e.b += b2i(pe < se)
				e.c += b2i(se < pe)
			}
		}
	}
	for k := range cells {
		e.classes = append(e.classes, k[0], k[1])
	}
	slices.Sort(e.classes)
	e.classes = slices.Compact(e.classes)
	for _, pc := range e.classes {
		row := make([]int64, len(e.classes))
		for j, sc := range e.classes {
			row[j] = cells[[2]int64{pc, sc}]
		}
		e.confusion = append(e.confusion, row)
	}
	slices.SortStableFunc(e.disagreements, func(a, b *run) int { return b.at.Compare(a.at) })
	return e
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

func mean(xs []float64) float64 {
	var s float64
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

// Ensure every number of the report matches a computation from the raw
// values written: traffic, agreement and its interval, κ, the confusion
// matrix, MAE, RMSE, max|Δ|, the within-tolerance share, accuracy and
// McNemar (class and numeric labels), latency percentiles and ratios, PSI,
// KS, resources, charts, the disagreement lists and every verdict check.
func testBuildMatchesRawValues(t *testing.T, open storetest.Opener) {
	db := open(t)
	ctx := context.Background()
	reqs, runs := scenario()
	write(t, db, reqs, runs)
	from, to := now.Add(-time.Hour).Truncate(time.Minute), now.Truncate(time.Minute).Add(time.Minute)
	db.CountSkips("s1", "v1", from.Add(10*time.Minute), 0, 3)
	db.CountSkips("s1", "v1", from.Add(-time.Minute), 0, 100)
	for i, r := range reqs[:40] {
		if !r.failed && i%2 == 1 {
			db.CountSkips("s2", "v2", r.at, 1, 0)
		}
	}
	db.CountSkips("s2", "v2", to, 50, 50)
	if err := db.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	for _, m := range []understudy.ModelInfo{
		{Name: "iris", Version: "pv1", SHA256: "a", File: "iris.onnx", Size: 1000, MemoryBytes: 5000},
		{Name: "s1", Version: "v1", SHA256: "b", File: "s1.onnx", Size: 2000, MemoryBytes: 7000},
		{Name: "s2", Version: "v2", SHA256: "c", File: "s2.onnx", Size: 300},
	} {
		if err := db.RecordModel(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		if err := db.RecordEvent(ctx, understudy.Event{Time: from.Add(time.Duration(i) * time.Minute), Kind: understudy.EventLoaded, Model: "s1", Actor: "watcher"}); err != nil {
			t.Fatal(err)
		}
	}

	tol := math.Ldexp(1, -8)
	th := report.Thresholds{MinPairs: 30, MinAgreement: 0.6, MaxLatencyRatio: 1.5, MaxErrorRateIncrease: 0.05, Alpha: 0.05}
	got, err := report.Build(ctx, db, report.Query{Window: "1h", Tolerance: tol}, th, now)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}

	assertEqual(t, "From", got.From, from)
	assertEqual(t, "To", got.To, to)
	assertEqual(t, "Primary", got.Primary, understudy.ModelRef{Name: "iris", Version: "pv1"})
	assertEqual(t, "Requests", got.Requests, 40)
	assertEqual(t, "PrimaryErrors", got.PrimaryErrors, 2)
	assertEqual(t, "Versions", fmt.Sprint(got.Versions), "[{s1 v1} {s2 v2}]")
	assertEqual(t, "Events", len(got.Events), 3)
	if len(got.Events) == 3 {
		assertEqual(t, "newest event", got.Events[0].Time.Equal(from.Add(2*time.Minute)), true)
	}
	if len(got.Shadows) != 2 {
		t.Fatalf("%d shadows, want 2", len(got.Shadows))
	}

	for _, sr := range got.Shadows {
		t.Run(sr.Name, func(t *testing.T) {
			e := expect(reqs, runs, sr.Name, from, to)
			tr := sr.Traffic
			assertEqual(t, "PrimaryVersions", fmt.Sprint(sr.PrimaryVersions), "[{iris pv1}]")
			assertEqual(t, "Traffic.Requests", tr.Requests, e.requests)
			assertEqual(t, "Mirrored", tr.Mirrored, e.mirrored)
			assertEqual(t, "OK", tr.OK, e.ok)
			assertEqual(t, "Errors", tr.Errors, e.errors)
			assertEqual(t, "Timeouts", tr.Timeouts, e.timeouts)
			assertEqual(t, "Offered", tr.Offered, e.mirrored+tr.SampledOut+tr.Dropped)
			assertEqual(t, "MirrorRate", tr.MirrorRate, float64(e.mirrored)/float64(e.mirrored+tr.SampledOut+tr.Dropped))
			assertEqual(t, "ErrorRate", tr.ErrorRate, float64(e.errors)/float64(e.mirrored))
			assertEqual(t, "TimeoutRate", tr.TimeoutRate, float64(e.timeouts)/float64(e.mirrored))
			assertEqual(t, "PrimaryErrorRate", tr.PrimaryErrorRate, 2.0/40)

			// Latency: exact, from the raw values.
			l := sr.Latency
			assertEqual(t, "Latency.Exact", l.Exact, true)
			assertEqual(t, "Latency.N", l.N, e.ok)
			pp := stats.Percentiles(e.primaryLat, 0.5, 0.95, 0.99)
			sp := stats.Percentiles(e.shadowLat, 0.5, 0.95, 0.99)
			assertEqual(t, "PrimaryP50", l.PrimaryP50, pp[0])
			assertEqual(t, "PrimaryP95", l.PrimaryP95, pp[1])
			assertEqual(t, "PrimaryP99", l.PrimaryP99, pp[2])
			assertEqual(t, "ShadowP50", l.ShadowP50, sp[0])
			assertEqual(t, "ShadowP95", l.ShadowP95, sp[1])
			assertEqual(t, "ShadowP99", l.ShadowP99, sp[2])
			assertEqual(t, "RatioP50", l.RatioP50, sp[0]/pp[0])
			assertEqual(t, "RatioP99", l.RatioP99, sp[2]/pp[2])

			// Regression over the first float output.
			g := sr.Regression
			if g == nil {
				t.Fatal("no Regression")
			}
			d := stats.Diffs(e.elements, e.shadowElements, tol)
			within := 0
			for _, x := range e.pairDiffs {
				if x <= tol {
					within++
				}
			}
			assertEqual(t, "Regression.Pairs", g.Pairs, e.ok)
			assertEqual(t, "Elements", g.Elements, int64(d.N))
			assertClose(t, "MAE", g.MAE, d.MAE, rel)
			assertClose(t, "RMSE", g.RMSE, d.RMSE, rel)
			assertEqual(t, "MaxAbs", g.MaxAbs, d.MaxAbs)
			assertEqual(t, "WithinTol", g.WithinTol, float64(within)/float64(len(e.pairDiffs)))
			assertEqual(t, "Regression.Exact", g.Exact, true)

			// Drift: KS over every pair (fewer than KSSamples).
			ksD, ksP := stats.KS2(e.primaryScores, e.shadowScores)
			if sr.Drift.KSD == nil || sr.Drift.KSP == nil {
				t.Fatal("no KS")
			}
			assertEqual(t, "KSD", *sr.Drift.KSD, ksD)
			assertEqual(t, "KSP", *sr.Drift.KSP, ksP)
			assertEqual(t, "KSSamples", sr.Drift.KSSamples, len(e.primaryScores))

			// Resources.
			assertClose(t, "PrimaryCPUUS", sr.Resources.PrimaryCPUUS, mean(e.primaryCPU), rel)
			assertEqual(t, "PrimaryFileSize", sr.Resources.PrimaryFileSize, 1000)
			assertEqual(t, "PrimaryMemory", sr.Resources.PrimaryMemory, 5000)

			// Charts: one point per minute with pairs; the histogram bars
			// hold every pair's max|Δ|.
			var bars int64
			for _, b := range sr.Charts.DiffHist {
				var n int64
				for _, x := range e.pairDiffs {
					if x >= b.Lo && x < b.Hi {
						n++
					}
				}
				assertEqual(t, fmt.Sprintf("bar [%g, %g)", b.Lo, b.Hi), b.Count, n)
				bars += b.Count
			}
			assertEqual(t, "pairs in the histogram", bars, e.ok)
			for _, p := range sr.Charts.Latency {
				var pl, sl []float64
				for _, r := range e.floatRuns {
					if r.at.Truncate(time.Minute).Equal(p.Time) {
						pl, sl = append(pl, float64(r.req.latency.Microseconds())), append(sl, float64(r.latency.Microseconds()))
					}
				}
				// One pair a minute at most: the p50 is its histogram
				// bucket's midpoint, within 0.5%.
				assertClose(t, "primary p50 at "+p.Time.Format("15:04"), p.A, stats.Percentiles(pl, 0.5)[0], 0.005)
				assertClose(t, "shadow p50 at "+p.Time.Format("15:04"), p.B, stats.Percentiles(sl, 0.5)[0], 0.005)
			}
			assertEqual(t, "latency points", len(sr.Charts.Latency), int(e.ok))

			// Largest differences: the 20 largest max|Δ| (which of equal
			// ones is unspecified), each with its request's data.
			largest := slices.Clone(e.pairDiffs)
			slices.SortFunc(largest, func(a, b float64) int { return cmp.Compare(b, a) })
			var gotLargest []float64
			for _, p := range sr.Disagreements.Largest {
				gotLargest = append(gotLargest, *p.MaxAbsDiff)
				i := slices.IndexFunc(e.floatRuns, func(r *run) bool { return r.req.id == p.RequestID })
				if i < 0 || maxAbs(diffs(e.floatRuns[i])) != *p.MaxAbsDiff {
					t.Errorf("pair %s: max|Δ| %g is not its own", p.RequestID, *p.MaxAbsDiff)
				}
				if p.Inputs == "" || p.PrimaryOutput == "" || p.ShadowOutput == "" {
					t.Errorf("pair %s: inputs or outputs missing", p.RequestID)
				}
			}
			assertEqual(t, "Largest", fmt.Sprint(gotLargest), fmt.Sprint(largest[:min(20, len(largest))]))

			switch sr.Name {
			case "s1":
				checkClassifier(t, &sr, e, th)
			case "s2":
				checkRegression(t, &sr, e, th, tol)
			}
		})
	}
}
