package stats_test

import (
	"math"
	"slices"
	"testing"

	"github.com/understudy-ml/understudy/pkg/stats"
)

// modSeq returns n values (i·mul mod m) + shift: scattered, with ties once n
// exceeds m, and reproducible exactly in any language.
func modSeq(n, mul, m, shift int) []float64 {
	xs := make([]float64, n)
	for i := range xs {
		xs[i] = float64(i*mul%m + shift)
	}
	return xs
}

// Ensure KS2 matches an exact big-integer path count for small and
// mid-sized samples, with and without ties and with unequal sizes, and the
// Kolmogorov limit above 10000.
func TestKS2(t *testing.T) {
	// wantD: the integer max |i·n − j·m| over the distinct pooled values
	// (i, j the counts ≤ the value), over m·n. wantP up to 10000: Python big
	// integers counting the monotone paths from (0, 0) to (m, n) that stay
	// strictly inside |i·n − j·m| < D·m·n, p = 1 − inside/C(m+n, n) as a
	// Fraction; scipy 1.10.1 stats.ks_2samp(a, b) (method='auto', here
	// exact) agrees to 1e-15. wantP above 10000: scipy 1.10.1
	// special.kolmogorov(sqrt(m·n/(m+n))·D); see "large" below.
	pi := []float64{3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3, 2, 3, 8, 4}
	e := []float64{2, 7, 1, 8, 2, 8, 1, 8, 2, 8, 4, 5, 9, 0, 4, 5, 2, 3, 5, 3, 6, 0, 2, 8, 7, 4, 7, 1, 3, 5, 2, 6, 6, 2, 4, 9}
	tests := []struct {
		name         string
		a, b         []float64
		wantD, wantP float64
	}{
		{
			"continuous 25 vs 20",
			[]float64{0.61, 0.29, 0.06, 0.59, -1.73, -0.74, 0.51, -0.56, 0.39, 1.64, 0.05, -0.06, 0.64, -0.82, 0.37, 1.77, 1.09, -1.28, 2.36, 1.31, 1.05, -0.52, -0.73, -0.46, -0.36},
			[]float64{1.35, 0.89, 2.21, 0.14, 1.92, 0.47, 1.65, 0.98, 2.73, -0.21, 1.18, 0.77, 1.56, 0.33, 2.05, 1.41, 0.62, 1.99, 0.91, 1.27},
			0.52, 0.0029338809744592436,
		},
		// Digits of π against digits of e: heavy ties. Evaluating between
		// the copies of a tied value would give a larger, wrong D.
		{"ties 20 vs 36", pi, e, 0.13333333333333333, 0.9501864576888058},
		{
			"ties equal sizes",
			[]float64{3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3, 2, 3, 8, 4, 6, 2, 6, 4, 3, 3, 8, 3, 2, 7},
			[]float64{2, 7, 1, 8, 2, 8, 1, 8, 2, 8, 4, 5, 9, 0, 4, 5, 2, 3, 5, 3, 6, 0, 2, 8, 7, 4, 7, 1, 3, 5},
			0.13333333333333333, 0.9578462903438839,
		},
		// Every path leaves the band only at the two extreme orderings:
		// p = 2/C(7, 3) = 2/35.
		{"disjoint", []float64{1, 2, 3}, []float64{7, 6, 5, 4}, 1, 0.05714285714285714},
		{"same values", []float64{1, 2, 2, 3}, []float64{3, 2, 1, 2}, 0, 1},
		{"one each", []float64{1}, []float64{2}, 1, 1},
		{"3000 vs 4500 with ties", modSeq(3000, 7919, 10007, 0), modSeq(4500, 6007, 10009, 400), 0.04044444444444444, 0.005432495989024168},
		// Kolmogorov limit. scipy's ks_2samp 'auto' gives 0.00832540337140648
		// here: since 1.5 its asymptotic branch is the one-sample finite-n
		// law kstwo.sf(D, round(mn/(m+n))), not the limit.
		{"large", modSeq(12000, 7919, 10007, 0), modSeq(15000, 6007, 10009, 200), 0.02025, 0.008443546183587204},
		{"empty", nil, []float64{1}, math.NaN(), math.NaN()},
		{"NaN", []float64{1, math.NaN()}, []float64{1}, math.NaN(), math.NaN()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := slices.Clone(tt.a), slices.Clone(tt.b)
			d, p := stats.KS2(a, b)
			assertClose(t, "D", d, tt.wantD)
			assertClose(t, "p", p, tt.wantP)
			if !sameBits(a, tt.a) || !sameBits(b, tt.b) {
				t.Error("KS2 modified its inputs")
			}
		})
	}
}

// Ensure KS2 is symmetric in its arguments.
func TestKS2Symmetric(t *testing.T) {
	a, b := modSeq(700, 7919, 10007, 0), modSeq(900, 6007, 10009, 300)
	d1, p1 := stats.KS2(a, b)
	d2, p2 := stats.KS2(b, a)
	if d1 != d2 || p1 != p2 {
		t.Errorf("KS2(b, a) = %v, %v, want %v, %v", d2, p2, d1, p1)
	}
}

// sameBits reports whether x and y hold the same float64 bit patterns, so
// that NaN equals NaN.
func sameBits(x, y []float64) bool {
	return slices.EqualFunc(x, y, func(a, b float64) bool { return math.Float64bits(a) == math.Float64bits(b) })
}

// BenchmarkKS2Exact times the largest exact case, 10000 against 10000.
func BenchmarkKS2Exact(b *testing.B) {
	x, y := modSeq(10000, 7919, 10007, 0), modSeq(10000, 6007, 10009, 100)
	for b.Loop() {
		stats.KS2(x, y)
	}
}
