package stats_test

import (
	"math"
	"testing"

	"github.com/understudy-ml/understudy/pkg/stats"
)

// Ensure PSI normalises counts, substitutes eps for zero shares only, and
// matches a 50-digit evaluation of Σ (a−e)·ln(a/e).
func TestPSI(t *testing.T) {
	// want: mpmath 1.2.1 at 50 digits of the documented formula.
	tests := []struct {
		name             string
		expected, actual []float64
		want             float64
	}{
		// (.12−.1)ln1.2 + (.18−.2)ln.9 + (.35−.3)ln(7/6) + (.35−.4)ln.875.
		{"counts", []float64{10, 20, 30, 40}, []float64{12, 18, 35, 35}, 0.020137745071624665},
		// (.1−1e-4)ln(.1/1e-4) + (.4−.5)ln.8 + 0.
		{"zero expected share", []float64{0, 50, 50}, []float64{10, 40, 50}, 0.71239910750173646},
		{"identical", []float64{25, 25, 25, 25}, []float64{25, 25, 25, 25}, 0},
		// 2·(1−1e-4)·ln(1e4); the empty middle category adds 0.
		{"disjoint", []float64{100, 0, 0}, []float64{0, 0, 100}, 18.41883867587797},
		{"shares", []float64{0.1, 0.2, 0.7}, []float64{0.3, 0.3, 0.4}, 0.42815370492506506},
		{"no expected rows", []float64{0, 0}, []float64{3, 1}, 8.6463305569263363},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assertClose(t, "psi", stats.PSI(tt.expected, tt.actual, 1e-4), tt.want)
		})
	}
}

// Ensure malformed counts panic instead of producing an index.
func TestPSIPanics(t *testing.T) {
	assertPanics(t, "lengths", func() { stats.PSI([]float64{1, 2}, []float64{1}, 1e-4) })
	assertPanics(t, "negative", func() { stats.PSI([]float64{1, -2}, []float64{1, 2}, 1e-4) })
	assertPanics(t, "NaN", func() { stats.PSI([]float64{1, math.NaN()}, []float64{1, 2}, 1e-4) })
	assertPanics(t, "zero eps", func() { stats.PSI([]float64{0, 2}, []float64{1, 2}, 0) })
}
