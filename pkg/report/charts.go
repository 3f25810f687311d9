package report

import (
	"math"
	"time"

	"github.com/understudy-ml/understudy/pkg/store"
)

// This file is the report's charts: the step that keeps a series to
// MaxChartPoints, the agreement and latency series, and the max|Δ| histogram
// regrouped into bars.

var chartSteps = []time.Duration{time.Minute, 5 * time.Minute, 15 * time.Minute, 30 * time.Minute, time.Hour,
	3 * time.Hour, 6 * time.Hour, 12 * time.Hour, 24 * time.Hour, 7 * 24 * time.Hour, 28 * 24 * time.Hour}

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

// diffBinsPerDecade is how many histogram bars the report draws per decade
// of max|Δ|; each holds 10 of the stored buckets.
const diffBinsPerDecade = 5

// charts turns the series into points and the max|Δ| histogram into bars:
// agreement and the histogram from the origin filter's rollups sm, latency
// from those of the latency's origin lat (live pairs), like the sections.
// The agreement series shows class agreement when the shadow has a class
// output, else the share of pairs within the tolerance.
func charts(sm, lat *store.ShadowSummary, tol float64) Charts {
	ch := Charts{Agreement: []Point{}, Latency: []Point{}, DiffHist: []Bin{}}
	classes := sm.Total.ClassRows > 0
	for _, p := range sm.Series {
		switch {
		case classes && p.ClassRows > 0:
			ch.Agreement = append(ch.Agreement, Point{Time: p.Start, A: ratio(p.AgreeRows, p.ClassRows), B: float64(p.ClassPairs)})
		case !classes && p.Diff.Total > 0:
			ch.Agreement = append(ch.Agreement, Point{Time: p.Start, A: ratio(p.Diff.AtMost(tol), float64(p.Diff.Total)), B: float64(p.FloatPairs)})
		}
	}
	for _, p := range lat.Series {
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
