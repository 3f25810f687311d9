package report

import (
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/understudy-ml/understudy/pkg/stats"
	"github.com/understudy-ml/understudy/pkg/store"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// How the report reads the store.
const (
	// ExactMaxPairs is the most pairs a shadow may have in the window for
	// its latency percentiles and within-tolerance share to be computed
	// from the raw rows; above it they come from the rollups' histograms
	// (Latency.Exact and Regression.Exact say which).
	ExactMaxPairs = 200_000
	// KSSamples is how many of the newest pairs the KS test compares.
	KSSamples = 5000
	// MinLabelled is the least number of labelled pairs before the
	// accuracy check can fail.
	MinLabelled = 10
	// PSIEpsilon replaces a class share of zero in the PSI.
	PSIEpsilon = 1e-4
	// MaxChartPoints bounds the points of a time series; the step is the
	// smallest of chartSteps that keeps to it.
	MaxChartPoints = 120
	// Listed is how many pairs each Disagreements list holds.
	Listed = 20
	// EventsListed is how many lifecycle events the report lists.
	EventsListed = 50
)

var chartSteps = []time.Duration{time.Minute, 5 * time.Minute, 15 * time.Minute, 30 * time.Minute, time.Hour,
	3 * time.Hour, 6 * time.Hour, 12 * time.Hour, 24 * time.Hour, 7 * 24 * time.Hour, 28 * 24 * time.Hour}

// Build computes the report for q over the window ending at now, judged
// by th (all zero: DefaultThresholds).
//
// The window is whole minutes, because the rollups are: From is now − window
// rounded down to the minute and To the end of now's minute. Counts, rates,
// agreement, κ, the confusion matrix, PSI, MAE, RMSE, max|Δ|, CPU and the
// charts come from the rollups the writer maintains, read as whole days,
// hours and minutes, so their cost does not grow with the pairs. Latency
// percentiles and the within-tolerance share come from the raw rows when
// the window holds at most ExactMaxPairs pairs of the shadow, else from the
// rollups' histograms; KS reads the newest KSSamples pairs, accuracy the
// labelled requests of the window, and the disagreement lists a few
// minutes of rows found through the rollups. All reads but the models and
// events share one store.Snapshot. Rows a backend stored before it kept
// rollups (SQLite's migration 00003) are not counted.
func Build(ctx context.Context, db store.Reader, q Query, th Thresholds, now time.Time) (*Report, error) {
	start := time.Now()
	if q.Window == "" {
		q.Window = "1h"
	}
	dur, ok := Windows[q.Window]
	if !ok {
		return nil, understudy.Errorf(understudy.EINVALID, "window %q: want one of %v", q.Window, WindowNames)
	}
	if !(q.Tolerance >= 0) || math.IsInf(q.Tolerance, 0) {
		return nil, understudy.Errorf(understudy.EINVALID, "tolerance %v: want a number ≥ 0", q.Tolerance)
	}
	if th == (Thresholds{}) {
		th = DefaultThresholds
	}
	r := &Report{GeneratedAt: now, Query: q, Thresholds: th, To: now.Truncate(time.Minute).Add(time.Minute)}
	if dur > 0 {
		r.From = now.Add(-dur).Truncate(time.Minute)
	}

	snap, err := db.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	defer snap.Close()

	r.Primary = q.Primary
	if r.Primary == (understudy.ModelRef{}) {
		if r.Primary, _, err = snap.LatestPrediction(ctx); err != nil {
			return nil, err
		}
	}
	primaries, err := snap.PrimaryCounts(ctx, r.From, r.To)
	if err != nil {
		return nil, err
	}
	for _, p := range primaries {
		r.Requests += p.Requests
		r.PrimaryErrors += p.Errors
	}
	// The charts' step follows the span; "all" spans from the first
	// minute with data.
	span := r.From
	if span.IsZero() {
		if span, _, err = snap.ShadowSpan(ctx, q.Shadow, q.Version); err != nil {
			return nil, err
		}
	}
	summaries, err := snap.ShadowSummaries(ctx, store.RollupFilter{Shadow: q.Shadow, Version: q.Version, From: r.From, To: r.To, Step: chartStep(span, r.To)})
	if err != nil {
		return nil, err
	}
	models, err := db.Models(ctx)
	if err != nil {
		return nil, err
	}
	b := &builder{snap: snap, r: r, q: q, th: th, primaries: primaries, models: map[understudy.ModelRef]store.ModelRecord{}}
	for _, m := range models {
		b.models[understudy.ModelRef{Name: m.Name, Version: m.Version}] = m
	}
	r.Shadows = make([]ShadowReport, 0, len(summaries))
	for i := range summaries {
		sr, err := b.shadow(ctx, &summaries[i])
		if err != nil {
			return nil, err
		}
		r.Shadows = append(r.Shadows, *sr)
	}
	if r.Versions, err = snap.ShadowVersions(ctx); err != nil {
		return nil, err
	}
	if r.Events, err = db.Events(ctx, store.EventFilter{Limit: EventsListed}); err != nil {
		return nil, err
	}
	r.ElapsedMS = float64(time.Since(start).Microseconds()) / 1000
	return r, nil
}

// chartStep is the smallest step that cuts [from, to) into at most
// MaxChartPoints points; a zero from (no data) gives the finest.
func chartStep(from, to time.Time) time.Duration {
	span := time.Minute
	if !from.IsZero() {
		span = to.Sub(from)
	}
	for _, s := range chartSteps {
		if span/s <= MaxChartPoints {
			return s
		}
	}
	return chartSteps[len(chartSteps)-1]
}

type builder struct {
	snap      store.Snapshot
	r         *Report
	q         Query
	th        Thresholds
	primaries []store.PrimaryCounts
	models    map[understudy.ModelRef]store.ModelRecord
}

func (b *builder) shadow(ctx context.Context, sm *store.ShadowSummary) (*ShadowReport, error) {
	r, q, tot := b.r, b.q, &sm.Total
	sr := &ShadowReport{Name: sm.Shadow, Version: sm.Version, PrimaryVersions: sm.Primaries}
	if sr.PrimaryVersions == nil {
		sr.PrimaryVersions = []understudy.ModelRef{}
	}

	// The primary's side is the versions this shadow was compared with;
	// its resources are those of the serving one, or else of the one that
	// answered most requests.
	var prim store.PrimaryCounts
	var main understudy.ModelRef
	var mainRequests int64 = -1
	for _, p := range b.primaries {
		ref := understudy.ModelRef{Name: p.Model, Version: p.Version}
		if !slices.Contains(sm.Primaries, ref) {
			continue
		}
		prim.Requests += p.Requests
		prim.Errors += p.Errors
		prim.CPUUS += p.CPUUS
		prim.CPURuns += p.CPURuns
		if p.Requests > mainRequests {
			main, mainRequests = ref, p.Requests
		}
	}
	if slices.Contains(sm.Primaries, r.Primary) {
		main = r.Primary
	}

	sampledOut, dropped, err := b.snap.SkipCounts(ctx, sm.Shadow, sm.Version, r.From, r.To)
	if err != nil {
		return nil, err
	}
	sr.Traffic = Traffic{Requests: prim.Requests, Mirrored: tot.Pairs, SampledOut: sampledOut, Dropped: dropped,
		OK: tot.OK, Errors: tot.Errors, Timeouts: tot.Timeouts}
	t := &sr.Traffic
	t.Offered = t.Mirrored + t.SampledOut + t.Dropped
	t.MirrorRate, t.DropRate = ratio(t.Mirrored, t.Offered), ratio(t.Dropped, t.Offered)
	t.ErrorRate, t.TimeoutRate = ratio(t.Errors, t.Mirrored), ratio(t.Timeouts, t.Mirrored)
	t.PrimaryErrorRate = ratio(prim.Errors, prim.Requests)

	classOut, floatOut, err := b.snap.OutputNames(ctx, sm.Shadow, sm.Version, r.From, r.To)
	if err != nil {
		return nil, err
	}
	var cells []store.ConfusionCell
	if tot.ClassRows > 0 {
		if cells, err = b.snap.Confusion(ctx, sm.Shadow, sm.Version, r.From, r.To); err != nil {
			return nil, err
		}
		sr.Classification = classification(classOut, tot, cells)
	}

	exactMax := int64(ExactMaxPairs)
	if q.ExactMaxPairs > 0 {
		exactMax = q.ExactMaxPairs
	}
	exact := tot.Pairs <= exactMax
	var samples *store.PairSamples
	if exact {
		if samples, err = b.snap.PairSamples(ctx, sm.Shadow, sm.Version, r.From, r.To); err != nil {
			return nil, err
		}
	}
	if tot.FloatPairs > 0 {
		sr.Regression = regression(floatOut, tot, samples, q.Tolerance)
	}
	sr.Latency = latency(tot, samples)

	acc, err := b.snap.Accuracy(ctx, sm.Shadow, sm.Version, r.From, r.To)
	if err != nil {
		return nil, err
	}
	sr.Accuracy = accuracy(acc)

	sr.Drift.PSI = psi(cells)
	ps, ss, err := b.snap.Scores(ctx, sm.Shadow, sm.Version, r.From, r.To, KSSamples)
	if err != nil {
		return nil, err
	}
	if len(ps) > 0 {
		d, p := stats.KS2(ps, ss)
		if !math.IsNaN(d) {
			sr.Drift.KSD, sr.Drift.KSP, sr.Drift.KSSamples = &d, &p, len(ps)
		}
	}

	res := &sr.Resources
	shadowModel, primaryModel := b.models[understudy.ModelRef{Name: sm.Shadow, Version: sm.Version}], b.models[main]
	res.ShadowFileSize, res.ShadowMemory = shadowModel.Size, shadowModel.MemoryBytes
	res.PrimaryFileSize, res.PrimaryMemory = primaryModel.Size, primaryModel.MemoryBytes
	res.ShadowCPUUS = ratio(tot.CPUUS, tot.CPURuns)
	res.PrimaryCPUUS = ratio(prim.CPUUS, prim.CPURuns)

	sr.Charts = charts(sm, q.Tolerance)

	latest, err := b.snap.Pairs(ctx, store.PairFilter{Shadow: sm.Shadow, Version: sm.Version, Since: r.From, Until: r.To,
		DisagreeOnly: true, Tolerance: q.Tolerance, Order: store.ByTime, Limit: Listed})
	if err != nil {
		return nil, err
	}
	largest, err := b.snap.Pairs(ctx, store.PairFilter{Shadow: sm.Shadow, Version: sm.Version, Since: r.From, Until: r.To,
		Order: store.ByDiff, Limit: Listed})
	if err != nil {
		return nil, err
	}
	sr.Disagreements = Disagreements{Latest: pairs(latest), Largest: pairs(largest)}

	sr.Verdict = verdict(sr, b.th)
	return sr, nil
}

// ratio is a/b, or 0 when b is 0.
func ratio[T int64 | float64](a, b T) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// classification summarises the first class output. Agreement and its
// Wilson interval count every row of that output; the confusion matrix and
// κ count the rows whose classes are integers (string classes only agree or
// not).
func classification(output string, tot *store.ShadowCounts, cells []store.ConfusionCell) *Classification {
	c := &Classification{Output: output, Pairs: tot.ClassRows, Agree: tot.AgreeRows}
	c.Agreement = ratio(c.Agree, c.Pairs)
	c.WilsonLow, c.WilsonHigh = stats.Wilson(int(c.Agree), int(c.Pairs), stats.Z95)
	c.Classes, c.Confusion = confusion(cells)
	c.Kappa = stats.CohensKappa(c.Confusion)
	return c
}

// confusion lays the cells out as a matrix over the classes either model
// predicted, ascending.
func confusion(cells []store.ConfusionCell) (classes []int64, m [][]int64) {
	classes = []int64{}
	for _, c := range cells {
		classes = append(classes, c.Primary, c.Shadow)
	}
	slices.Sort(classes)
	classes = slices.Compact(classes)
	m = make([][]int64, len(classes))
	for i := range m {
		m[i] = make([]int64, len(classes))
	}
	for _, c := range cells {
		i, _ := slices.BinarySearch(classes, c.Primary)
		j, _ := slices.BinarySearch(classes, c.Shadow)
		m[i][j] += c.N
	}
	return classes, m
}

// regression summarises the first float output: MAE and RMSE over every
// element, max|Δ| and the share of pairs within the tolerance.
func regression(output string, tot *store.ShadowCounts, samples *store.PairSamples, tol float64) *Regression {
	g := &Regression{Output: output, Pairs: tot.FloatPairs, Elements: tot.Elements, Tolerance: tol}
	if tot.Elements > 0 {
		g.MAE = finite(tot.SumAbs / float64(tot.Elements))
		g.RMSE = finite(math.Sqrt(tot.SumSq / float64(tot.Elements)))
	}
	if tot.MaxAbs != nil {
		g.MaxAbs = finite(*tot.MaxAbs)
	}
	if samples != nil {
		g.Exact = true
		within := 0
		for _, d := range samples.MaxAbsDiff {
			if d <= tol {
				within++
			}
		}
		g.WithinTol = ratio(int64(within), int64(len(samples.MaxAbsDiff)))
	} else {
		g.WithinTol = ratio(tot.Diff.AtMost(tol), float64(tot.Diff.Total))
	}
	return g
}

// finite keeps a value JSON can carry: an infinite difference (one model
// answered ±Inf where the other did not) shows as the largest float64.
func finite(x float64) float64 {
	switch {
	case math.IsInf(x, 1):
		return math.MaxFloat64
	case math.IsInf(x, -1):
		return -math.MaxFloat64
	case math.IsNaN(x):
		return 0
	}
	return x
}

// latency gives percentiles over the ok pairs: exact from samples when
// given, else from the rollups' histograms (within 0.5%).
func latency(tot *store.ShadowCounts, samples *store.PairSamples) Latency {
	var l Latency
	qs := []float64{0.5, 0.95, 0.99}
	var pp, sp []float64
	if samples != nil {
		l.Exact, l.N = true, int64(len(samples.Latency))
		if len(samples.Latency) > 0 {
			sp = stats.Percentiles(samples.Latency, qs...)
		}
		if len(samples.PrimaryLatency) > 0 {
			pp = stats.Percentiles(samples.PrimaryLatency, qs...)
		}
	} else {
		l.N = tot.Latency.Total
		if tot.Latency.Total > 0 {
			sp = []float64{tot.Latency.Quantile(qs[0]), tot.Latency.Quantile(qs[1]), tot.Latency.Quantile(qs[2])}
		}
		if tot.PrimaryLatency.Total > 0 {
			pp = []float64{tot.PrimaryLatency.Quantile(qs[0]), tot.PrimaryLatency.Quantile(qs[1]), tot.PrimaryLatency.Quantile(qs[2])}
		}
	}
	if sp != nil {
		l.ShadowP50, l.ShadowP95, l.ShadowP99 = sp[0], sp[1], sp[2]
	}
	if pp != nil {
		l.PrimaryP50, l.PrimaryP95, l.PrimaryP99 = pp[0], pp[1], pp[2]
	}
	if sp != nil && pp != nil {
		l.RatioP50, l.RatioP99 = latencyRatio(l.ShadowP50, l.PrimaryP50), latencyRatio(l.ShadowP99, l.PrimaryP99)
	}
	return l
}

// latencyRatio is shadow/primary with both at least 1 µs, the resolution of
// stored latencies, so that sub-microsecond runs give a finite ratio.
func latencyRatio(shadow, primary float64) float64 {
	return max(shadow, 1) / max(primary, 1)
}

// accuracy compares both models on labelled pairs: as classes when every
// label is a whole number and every pair has both first-row classes, else
// as numbers, by the first row's top score (for a regression model, its
// first output value). McNemarP is the exact McNemar test on B and C; for
// numbers, B and C count the pairs where the primary, or the shadow, was
// strictly closer to the label, and the same test is the exact sign test.
func accuracy(a store.AccuracyCounts) *Accuracy {
	if a.Labelled == 0 {
		return nil
	}
	acc := &Accuracy{Labelled: a.Labelled, McNemarP: 1}
	switch {
	case a.NonIntegral == 0 && a.NoClass == 0:
		acc.Compared = a.Labelled
		acc.PrimaryCorrect, acc.ShadowCorrect = a.PrimaryCorrect, a.ShadowCorrect
		acc.PrimaryAcc, acc.ShadowAcc = ratio(a.PrimaryCorrect, a.Labelled), ratio(a.ShadowCorrect, a.Labelled)
		acc.B, acc.C = a.B, a.C
		acc.McNemarP = stats.McNemarExact(a.B, a.C)
	case a.Scored > 0:
		acc.Numeric, acc.Compared = true, a.Scored
		acc.PrimaryMAE, acc.ShadowMAE = finite(a.PrimaryAbsErr/float64(a.Scored)), finite(a.ShadowAbsErr/float64(a.Scored))
		acc.B, acc.C = a.PrimaryCloser, a.ShadowCloser
		acc.McNemarP = stats.McNemarExact(a.B, a.C)
	}
	return acc
}

// psi compares the shadow's predicted-class distribution (actual) with the
// primary's (expected) over the same rows.
func psi(cells []store.ConfusionCell) *float64 {
	if len(cells) == 0 {
		return nil
	}
	classes, m := confusion(cells)
	expected, actual := make([]float64, len(classes)), make([]float64, len(classes))
	for i := range m {
		for j, n := range m[i] {
			expected[i] += float64(n)
			actual[j] += float64(n)
		}
	}
	v := stats.PSI(expected, actual, PSIEpsilon)
	return &v
}

// diffBinsPerDecade is how many histogram bars the report draws per decade
// of max|Δ|; each holds 10 of the stored buckets.
const diffBinsPerDecade = 5

// charts turns the series into points and the max|Δ| histogram into bars.
// The agreement series shows class agreement when the shadow has a class
// output, else the share of pairs within the tolerance.
func charts(sm *store.ShadowSummary, tol float64) Charts {
	ch := Charts{Agreement: []Point{}, Latency: []Point{}, DiffHist: []Bin{}}
	classes := sm.Total.ClassRows > 0
	for _, p := range sm.Series {
		switch {
		case classes && p.ClassRows > 0:
			ch.Agreement = append(ch.Agreement, Point{Time: p.Start, A: ratio(p.AgreeRows, p.ClassRows), B: float64(p.ClassPairs)})
		case !classes && p.Diff.Total > 0:
			ch.Agreement = append(ch.Agreement, Point{Time: p.Start, A: ratio(p.Diff.AtMost(tol), float64(p.Diff.Total)), B: float64(p.FloatPairs)})
		}
		if p.Latency.Total > 0 && p.PrimaryLatency.Total > 0 {
			ch.Latency = append(ch.Latency, Point{Time: p.Start, A: p.PrimaryLatency.Quantile(0.5), B: p.Latency.Quantile(0.5)})
		}
	}
	ch.DiffHist = diffBins(sm.Total.Diff)
	return ch
}

// diffBins regroups the stored max|Δ| buckets into diffBinsPerDecade bars
// per decade, from the first bar with pairs to the last; differences below
// 10⁻¹² (exact matches, mostly) get a bar [0, 10⁻¹²), and those of 10¹² and
// more one ending at the largest float64.
func diffBins(h *store.Histogram) []Bin {
	bins := []Bin{}
	if h.Total == 0 {
		return bins
	}
	b := h.B
	per := b.PerDecade / diffBinsPerDecade
	if h.Counts[0] > 0 {
		bins = append(bins, Bin{Lo: 0, Hi: b.Lower(1), Count: h.Counts[0]})
	}
	first, last := -1, -1
	for i := 1; i <= b.N; i++ {
		if h.Counts[i] > 0 {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	if first > 0 {
		for lo := (first-1)/per*per + 1; lo <= last; lo += per {
			var n int64
			for i := lo; i < lo+per; i++ {
				n += h.Counts[i]
			}
			bins = append(bins, Bin{Lo: b.Lower(lo), Hi: b.Lower(lo + per), Count: n})
		}
	}
	if n := h.Counts[b.N+1]; n > 0 {
		bins = append(bins, Bin{Lo: b.Lower(b.N + 1), Hi: math.MaxFloat64, Count: n})
	}
	return bins
}

// pairs converts stored pairs to the view model.
func pairs(recs []store.PairRecord) []Pair {
	out := make([]Pair, len(recs))
	for i, p := range recs {
		if p.MaxAbsDiff != nil {
			d := finite(*p.MaxAbsDiff)
			p.MaxAbsDiff = &d
		}
		out[i] = Pair{RequestID: p.RequestID, Time: p.Time, Shadow: p.Shadow, Version: p.Version,
			PrimaryModel: p.PrimaryModel, PrimaryVersion: p.PrimaryVersion, PrimaryClass: p.PrimaryClass, ShadowClass: p.ShadowClass,
			Agreement: p.Agreement, MaxAbsDiff: p.MaxAbsDiff, Status: p.Status, Label: p.Label,
			Inputs: p.Inputs, PrimaryOutput: p.PrimaryOutputs, ShadowOutput: p.ShadowOutputs}
	}
	return out
}

// verdict checks the shadow against the thresholds, in a fixed order: pairs,
// agreement, latency, errors, accuracy.
func verdict(sr *ShadowReport, th Thresholds) Verdict {
	t := &sr.Traffic
	checks := []Check{}
	add := func(name string, pass bool, format string, args ...any) {
		checks = append(checks, Check{Name: name, Pass: pass, Detail: fmt.Sprintf(format, args...)})
	}

	add("pairs", t.OK >= th.MinPairs, "%d compared pairs (need at least %d)", t.OK, th.MinPairs)

	switch c, g := sr.Classification, sr.Regression; {
	case c != nil && c.WilsonLow < th.MinAgreement && significantlyBetter(sr.Accuracy, th):
		// Disagreeing with a primary that is wrong is the point of a better
		// model; low agreement only matters without evidence that it is.
		a := sr.Accuracy
		add("agreement", true,
			"agreement %.4f (%d of %d rows); 95%% Wilson lower bound %.4f is under %.4f, but the shadow is significantly more accurate (%.4f vs %.4f, McNemar p = %.4g), so the disagreements are its corrections",
			c.Agreement, c.Agree, c.Pairs, c.WilsonLow, th.MinAgreement, a.ShadowAcc, a.PrimaryAcc, a.McNemarP)
	case c != nil:
		add("agreement", c.WilsonLow >= th.MinAgreement,
			"agreement %.4f (%d of %d rows); 95%% Wilson lower bound %.4f (need at least %.4f)",
			c.Agreement, c.Agree, c.Pairs, c.WilsonLow, th.MinAgreement)
	case g != nil:
		within := int(math.Round(g.WithinTol * float64(g.Pairs)))
		lo, _ := stats.Wilson(within, int(g.Pairs), stats.Z95)
		add("agreement", lo >= th.MinAgreement,
			"no class output: %.4f of %d pairs within |Δ| ≤ %g; 95%% Wilson lower bound %.4f (need at least %.4f)",
			g.WithinTol, g.Pairs, g.Tolerance, lo, th.MinAgreement)
	default:
		add("agreement", false, "no compared outputs: neither a class nor a float output could be compared")
	}

	// The ratio is 0 only when one side has no latencies.
	l := &sr.Latency
	if l.RatioP99 == 0 {
		add("latency", false, "no latencies of ok pairs with the primary's latency")
	} else {
		add("latency", l.RatioP99 <= th.MaxLatencyRatio, "p99 %s vs primary %s: ratio %.3f (need at most %.3f)",
			micros(l.ShadowP99), micros(l.PrimaryP99), l.RatioP99, th.MaxLatencyRatio)
	}

	if t.Mirrored == 0 {
		add("errors", false, "no mirrored requests")
	} else {
		rate := ratio(t.Errors+t.Timeouts, t.Mirrored)
		limit := t.PrimaryErrorRate + th.MaxErrorRateIncrease
		add("errors", rate <= limit, "%d errors and %d timeouts in %d runs: %.4f%% (need at most %.4f%%: primary %.4f%% + %.4f%%)",
			t.Errors, t.Timeouts, t.Mirrored, 100*rate, 100*limit, 100*t.PrimaryErrorRate, 100*th.MaxErrorRateIncrease)
	}

	// Too few labels cannot show a difference, so they pass: the check
	// stops a shadow that is measurably worse, it does not demand labels.
	a := sr.Accuracy
	switch {
	case a == nil:
		add("accuracy", true, "not enough labels: no labelled pairs (the check needs %d)", MinLabelled)
	case a.Compared < MinLabelled:
		add("accuracy", true, "not enough labels: %d labelled pairs, %d comparable (the check needs %d)", a.Labelled, a.Compared, MinLabelled)
	case a.Numeric:
		worse := a.ShadowMAE > a.PrimaryMAE && a.McNemarP < th.Alpha
		add("accuracy", !worse, "MAE against %d numeric labels: shadow %.6g, primary %.6g; shadow closer on %d, primary on %d; sign test p = %.4g (fail when worse and p < %g)",
			a.Compared, a.ShadowMAE, a.PrimaryMAE, a.C, a.B, a.McNemarP, th.Alpha)
	default:
		worse := a.ShadowAcc < a.PrimaryAcc && a.McNemarP < th.Alpha
		add("accuracy", !worse, "accuracy on %d labelled pairs: shadow %.4f, primary %.4f; only the primary right %d, only the shadow right %d; McNemar p = %.4g (fail when worse and p < %g)",
			a.Labelled, a.ShadowAcc, a.PrimaryAcc, a.B, a.C, a.McNemarP, th.Alpha)
	}

	ready := true
	for _, c := range checks {
		ready = ready && c.Pass
	}
	return Verdict{Ready: ready, Checks: checks}
}

// significantlyBetter reports whether labelled class pairs show the shadow
// more accurate than the primary at the thresholds' significance level.
func significantlyBetter(a *Accuracy, th Thresholds) bool {
	return a != nil && !a.Numeric && a.Compared >= MinLabelled && a.ShadowAcc > a.PrimaryAcc && a.McNemarP < th.Alpha
}

// micros formats a latency in microseconds for a check's detail.
func micros(us float64) string {
	switch {
	case us >= 1e6:
		return fmt.Sprintf("%.3g s", us/1e6)
	case us >= 1e3:
		return fmt.Sprintf("%.3g ms", us/1e3)
	}
	return fmt.Sprintf("%.3g µs", us)
}
