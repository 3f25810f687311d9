package report

import (
	"math"
	"slices"

	"github.com/understudy-ml/understudy/pkg/stats"
	"github.com/understudy-ml/understudy/pkg/store"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// This file computes the report's sections for one shadow from what the
// store returns: classification (agreement, Wilson interval, confusion
// matrix, κ), regression (MAE, RMSE, max|Δ|, the share within tolerance),
// latency percentiles, accuracy on labelled requests, drift (PSI) and the
// disagreement lists. Each is a pure function of its inputs; the builder in
// build.go does the reading.

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
			Agreement: p.Agreement, MaxAbsDiff: p.MaxAbsDiff, Status: p.Status, Label: p.Label, Origin: understudy.StoredOrigin(p.Origin),
			Inputs: p.Inputs, PrimaryOutput: p.PrimaryOutputs, ShadowOutput: p.ShadowOutputs}
	}
	return out
}
