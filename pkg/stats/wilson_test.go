package stats_test

import (
	"testing"

	"github.com/understudy-ml/understudy/pkg/stats"
)

// Ensure the Wilson interval matches a 50-digit evaluation of the textbook
// formula, including the exact 0 and 1 bounds at 0/n and n/n and the
// extremes of a million trials, where the centre ∓ half-width form loses
// digits.
func TestWilson(t *testing.T) {
	// want: mpmath 1.2.1 at 50 digits of c ∓ h with p = x/n,
	// c = (p + z²/2n)/(1 + z²/n), h = z/(1 + z²/n)·√(p(1−p)/n + z²/4n²),
	// z being the float64 passed in. statsmodels 0.13.5 proportion_confint
	// (method='wilson') agrees to 1e-15, except that it gives 4.2e-22 and
	// -2.8e-17 instead of 0 for the lower bound at 0/1e6 and 0/10 (z = 2.58).
	const z99 = 2.5758293035489004
	tests := []struct {
		name           string
		x, n           int
		z              float64
		wantLo, wantHi float64
	}{
		{"no trials", 0, 0, stats.Z95, 0, 1},
		{"0/1", 0, 1, stats.Z95, 0, 0.79345068562276258},
		{"1/1", 1, 1, stats.Z95, 0.20654931437723742, 1},
		{"0/10", 0, 10, stats.Z95, 0, 0.27753279986288921},
		{"10/10", 10, 10, stats.Z95, 0.72246720013711079, 1},
		{"7/20", 7, 20, stats.Z95, 0.18119182410108206, 0.56714572331476375},
		{"523/1000", 523, 1000, stats.Z95, 0.49201420125459352, 0.55380976785507094},
		{"1/1e6", 1, 1000000, stats.Z95, 1.7652457674537149e-7, 5.6649118043114422e-6},
		{"0/1e6", 0, 1000000, stats.Z95, 0, 3.8414440639449416e-6},
		{"999999/1e6", 999999, 1000000, stats.Z95, 0.99999433508819569, 0.99999982347542325},
		{"0/10 at 99%", 0, 10, z99, 0, 0.39885409330490808},
		{"1/1 at 99%", 1, 1, z99, 0.13097754328018588, 1},
		{"7/20 at 99%", 7, 20, z99, 0.14639344137693882, 0.6283381789526872},
		{"1/1e6 at 99%", 1, 1000000, z99, 1.1740547499963234e-7, 8.5174338347555942e-6},
		{"999999/1e6 at 99%", 999999, 1000000, z99, 0.99999148256616524, 0.999999882594525},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lo, hi := stats.Wilson(tt.x, tt.n, tt.z)
			assertClose(t, "lo", lo, tt.wantLo)
			assertClose(t, "hi", hi, tt.wantHi)
		})
	}
}

// Ensure impossible counts panic instead of producing an interval.
func TestWilsonPanics(t *testing.T) {
	assertPanics(t, "Wilson(3, 2)", func() { stats.Wilson(3, 2, stats.Z95) })
	assertPanics(t, "Wilson(-1, 2)", func() { stats.Wilson(-1, 2, stats.Z95) })
	assertPanics(t, "Wilson(0, -1)", func() { stats.Wilson(0, -1, stats.Z95) })
}
