package stats_test

import (
	"testing"

	"github.com/understudy-ml/understudy/pkg/stats"
)

// Ensure Cohen's kappa matches exact rational arithmetic on textbook and
// edge-case matrices, including a dominant class where pₑ is within 1e-12
// of 1.
func TestCohensKappa(t *testing.T) {
	// want: Python fractions.Fraction of (N·Σdiag − Σ rowᵢ·colᵢ)/(N² − Σ rowᵢ·colᵢ),
	// rounded to float64. statsmodels 0.13.5 cohens_kappa agrees to 1e-15
	// except on "dominant class", where its floating 1 − pₑ gives
	// 0.28572108293286386, wrong in the fifth digit.
	tests := []struct {
		name      string
		confusion [][]int64
		want      float64
	}{
		// Wikipedia's 2×2: pₒ = 35/50 = 0.7, row totals 25/25, column
		// totals 30/20, so pₑ = (25·30 + 25·20)/50² = 0.5 and
		// κ = (0.7 − 0.5)/(1 − 0.5) = 0.4.
		{"classic 2x2", [][]int64{{20, 5}, {10, 15}}, 0.4},
		// pₒ = 70/100, rows 50/30/20, columns 60/30/10,
		// pₑ = (3000 + 900 + 200)/10000 = 0.41, κ = 0.29/0.59 = 29/59.
		{"3x3", [][]int64{{44, 5, 1}, {7, 20, 3}, {9, 5, 6}}, 0.4915254237288136},
		{"4x4", [][]int64{{9000, 100, 20, 0}, {50, 3000, 10, 5}, {0, 40, 800, 60}, {1, 0, 30, 200}}, 0.9500915065824831},
		// pₒ = 15/45, rows 6/15/24, columns 12/15/18, pₑ = 729/2025 = 0.36,
		// κ = (1/3 − 0.36)/0.64 = −1/24.
		{"worse than chance", [][]int64{{1, 2, 3}, {4, 5, 6}, {7, 8, 9}}, -0.041666666666666664},
		{"total disagreement", [][]int64{{0, 5}, {5, 0}}, -1},
		{"dominant class", [][]int64{{1000000000000, 3}, {2, 1}}, 0.2857142857118367},
		// pₑ = 1: every row in one diagonal cell, so pₒ = 1 as well.
		{"one class only", [][]int64{{5, 0}, {0, 0}}, 1},
		{"empty", [][]int64{{0, 0}, {0, 0}}, 0},
		{"no classes", nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assertClose(t, "kappa", stats.CohensKappa(tt.confusion), tt.want)
		})
	}
}

// Ensure malformed matrices panic instead of producing a kappa.
func TestCohensKappaPanics(t *testing.T) {
	assertPanics(t, "ragged", func() { stats.CohensKappa([][]int64{{1, 2}, {3}}) })
	assertPanics(t, "not square", func() { stats.CohensKappa([][]int64{{1, 2, 3}, {4, 5, 6}}) })
	assertPanics(t, "negative", func() { stats.CohensKappa([][]int64{{1, -2}, {3, 4}}) })
}
