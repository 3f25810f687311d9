package stats_test

import (
	"math"
	"testing"

	"github.com/understudy-ml/understudy/pkg/stats"
)

// Ensure Diffs matches correctly rounded sums on a small hand-checked case
// and on 100000 rows, and reports NaN and infinite differences honestly.
func TestDiffs(t *testing.T) {
	// want: Python 3.11 with math.fsum (correctly rounded) for the sums:
	// n, fsum(d)/n, sqrt(fsum(d·d)/n), max(d), count(d ≤ tol)/n.
	n := 100000
	a, b := make([]float64, n), make([]float64, n)
	for i := range n {
		a[i] = float64(i%1009) / 1000
		b[i] = float64(i*37%1013) / 997
	}
	inf := math.Inf(1)
	tests := []struct {
		name string
		a, b []float64
		tol  float64
		want stats.Diff
	}{
		// |d| = .5 0 1 .25: MAE 1.75/4, RMSE √(1.3125/4), 2 of 4 within .25.
		{"small", []float64{1, 2, 3, 4}, []float64{1.5, 2, 2, 4.25}, 0.25, stats.Diff{N: 4, MAE: 0.4375, RMSE: 0.57282196186948, MaxAbs: 1, WithinTol: 0.5}},
		{"100000 rows", a, b, 0.1, stats.Diff{N: n, MAE: 0.33744324136409226, RMSE: 0.4132828732208083, MaxAbs: 1.013039117352056, WithinTol: 0.18787}},
		{"empty", nil, nil, 0.1, stats.Diff{}},
		{"NaN", []float64{1, math.NaN(), 3}, []float64{1, 2, 5}, 0.1, stats.Diff{N: 3, MAE: math.NaN(), RMSE: math.NaN(), MaxAbs: math.NaN(), WithinTol: 1.0 / 3}},
		{"infinite", []float64{1, inf}, []float64{1, 0}, 0.1, stats.Diff{N: 2, MAE: inf, RMSE: inf, MaxAbs: inf, WithinTol: 0.5}},
		{"inf minus inf", []float64{inf}, []float64{inf}, 0.1, stats.Diff{N: 1, MAE: math.NaN(), RMSE: math.NaN(), MaxAbs: math.NaN(), WithinTol: 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := stats.Diffs(tt.a, tt.b, tt.tol)
			if got.N != tt.want.N {
				t.Errorf("N = %d, want %d", got.N, tt.want.N)
			}
			assertClose(t, "MAE", got.MAE, tt.want.MAE)
			assertClose(t, "RMSE", got.RMSE, tt.want.RMSE)
			assertClose(t, "MaxAbs", got.MaxAbs, tt.want.MaxAbs)
			assertClose(t, "WithinTol", got.WithinTol, tt.want.WithinTol)
		})
	}
}

// Ensure slices of different lengths panic instead of being truncated.
func TestDiffsPanics(t *testing.T) {
	assertPanics(t, "lengths", func() { stats.Diffs([]float64{1, 2}, []float64{1}, 0) })
}
