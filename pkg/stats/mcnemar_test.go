package stats_test

import (
	"cmp"
	"testing"

	"github.com/understudy-ml/understudy/pkg/stats"
)

// Ensure the exact McNemar p-value matches a 50-digit binomial tail sum,
// from a handful of discordant pairs up to a million, deep in the tail.
func TestMcNemarExact(t *testing.T) {
	// want: mpmath 1.2.1 at 50 digits of min(1, 2·Σ_{i≤min(b,c)} C(b+c, i)/2^(b+c)),
	// summed from i = min(b,c) down until the terms fall below 1e-40 of
	// the sum. statsmodels 0.13.5 mcnemar(exact=True) agrees to 1e-13.
	tests := []struct {
		name string
		b, c int64
		want float64
		tol  float64 // relative; 0 means rel
	}{
		{"no discordant pairs", 0, 0, 1, 0},
		// P[X ≤ 1] for n = 5 is (1 + 5)/32, doubled: 0.375.
		{"1 vs 4", 1, 4, 0.375, 0},
		{"4 vs 1", 4, 1, 0.375, 0},
		// 2·(1/2)^10.
		{"0 vs 10", 0, 10, 0.001953125, 0},
		// 2·(1 + 10 + 45 + 120)/1024 = 0.34375.
		{"3 vs 7", 3, 7, 0.34375, 0},
		{"balanced", 5, 5, 1, 0},
		{"10 vs 100", 10, 100, 8.0095211892554481e-20, 0},
		{"100 vs 1000", 100, 1000, 2.3274498138259828e-187, 0},
		{"4000 vs 4200", 4000, 4200, 0.027972423571324382, 0},
		{"4200 vs 4000", 4200, 4000, 0.027972423571324382, 0},
		{"499000 vs 501000", 499000, 501000, 0.045608299865382086, 0},
		{"490000 vs 510000", 490000, 510000, 5.5443632876992246e-89, 0},
		// gonum's incomplete beta is least accurate here, near the centre
		// of a million trials: 1.36e-9 relative.
		{"499500 vs 500500", 499500, 500500, 0.31779469136330554, 2e-9},
		// The true value, 1.01e-301024, is below the smallest float64.
		{"1 vs 1e6", 1, 1000000, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assertCloseTol(t, "p", stats.McNemarExact(tt.b, tt.c), tt.want, cmp.Or(tt.tol, rel))
		})
	}
}

// Ensure negative counts panic instead of producing a p-value.
func TestMcNemarExactPanics(t *testing.T) {
	assertPanics(t, "McNemarExact(-1, 3)", func() { stats.McNemarExact(-1, 3) })
}
