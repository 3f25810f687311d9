package stats_test

import (
	"math"
	"slices"
	"testing"

	"github.com/understudy-ml/understudy/pkg/stats"
)

// Ensure Percentiles matches numpy's default (linear, type 7) quantiles at
// the latency percentiles and the extremes, and leaves its input unsorted.
func TestPercentiles(t *testing.T) {
	// want: numpy 1.24.2 np.quantile(xs, [0, .25, .5, .9, .95, .99, 1]).
	qs := []float64{0, 0.25, 0.5, 0.9, 0.95, 0.99, 1}
	tests := []struct {
		name string
		xs   []float64
		want []float64
	}{
		// Sorted: 3 4.5 5.5 7.25 8 8 9 12.5 15.75 61 100. q = .95 gives
		// h = 9.5, halfway between 61 and 100: 80.5. q = .99 gives h = 9.9:
		// 100 − (100 − 61)·0.1 = 96.1.
		{"latencies", []float64{12.5, 3, 7.25, 100, 8, 8, 15.75, 4.5, 9, 61, 5.5}, []float64{3, 6.375, 8, 61, 80.5, 96.10000000000001, 100}},
		{"1000 values", scaled(modSeq(1000, 7919, 10007, 0), 1000), []float64{0, 2.49875, 5.008, 9.0069, 9.506499999999999, 9.90109, 9.997}},
		{"one value", []float64{42}, []float64{42, 42, 42, 42, 42, 42, 42}},
		{"empty", nil, []float64{math.NaN(), math.NaN(), math.NaN(), math.NaN(), math.NaN(), math.NaN(), math.NaN()}},
		{"NaN", []float64{1, math.NaN(), 3}, []float64{math.NaN(), math.NaN(), math.NaN(), math.NaN(), math.NaN(), math.NaN(), math.NaN()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			xs := slices.Clone(tt.xs)
			got := stats.Percentiles(xs, qs...)
			for i := range qs {
				assertClose(t, "quantile", got[i], tt.want[i])
			}
			if !sameBits(xs, tt.xs) {
				t.Error("Percentiles modified its input")
			}
		})
	}
}

// Ensure Quantile interpolates between the two closest ranks.
func TestQuantile(t *testing.T) {
	// want: numpy 1.24.2 np.quantile([1., 2.], q); by hand, 1 + q.
	for _, tt := range []struct{ q, want float64 }{{0, 1}, {0.3, 1.3}, {0.5, 1.5}, {0.99, 1.99}, {1, 2}} {
		assertClose(t, "quantile", stats.Quantile([]float64{1, 2}, tt.q), tt.want)
	}
}

// Ensure an unsorted slice or a q outside [0, 1] panics instead of giving a
// plausible percentile.
func TestQuantilePanics(t *testing.T) {
	assertPanics(t, "unsorted", func() { stats.Quantile([]float64{2, 1}, 0.5) })
	assertPanics(t, "q > 1", func() { stats.Quantile([]float64{1, 2}, 1.5) })
	assertPanics(t, "q < 0", func() { stats.Percentiles([]float64{1, 2}, -0.1) })
	assertPanics(t, "q NaN", func() { stats.Percentiles([]float64{1, 2}, math.NaN()) })
}

// scaled returns xs, each divided by div.
func scaled(xs []float64, div float64) []float64 {
	for i := range xs {
		xs[i] /= div
	}
	return xs
}
