package stats

import (
	"fmt"
	"math"
	"slices"
)

// Quantile returns the q-quantile of an ascending slice by linear
// interpolation between closest ranks (Hyndman–Fan type 7, numpy's default
// 'linear'): with h = (n−1)·q, it is x[⌊h⌋] + (h−⌊h⌋)·(x[⌊h⌋+1] − x[⌊h⌋]),
// so q = 0 and q = 1 give the minimum and maximum; it returns NaN for an
// empty slice or one holding NaN, and panics unless q is in [0, 1] and the
// slice is sorted (NaNs first, as slices.Sort leaves them).
func Quantile(sorted []float64, q float64) float64 {
	if !slices.IsSorted(sorted) {
		panic("stats: Quantile: input is not sorted")
	}
	return quantile(sorted, q)
}

// Percentiles returns the type-7 quantile (see [Quantile]) of xs at each q
// in qs, sorting a copy so that xs is left as it was.
func Percentiles(xs []float64, qs ...float64) []float64 {
	sorted := slices.Clone(xs)
	slices.Sort(sorted)
	out := make([]float64, len(qs))
	for i, q := range qs {
		out[i] = quantile(sorted, q)
	}
	return out
}

func quantile(sorted []float64, q float64) float64 {
	if !(q >= 0 && q <= 1) {
		panic(fmt.Sprintf("stats: quantile %v, want 0 <= q <= 1", q))
	}
	n := len(sorted)
	// Sorting puts NaNs first, so one look finds any.
	if n == 0 || math.IsNaN(sorted[0]) {
		return math.NaN()
	}
	h := float64(n-1) * q
	i := int(h)
	if i >= n-1 {
		return sorted[n-1]
	}
	lo, hi, t := sorted[i], sorted[i+1], h-float64(i)
	// Interpolating from the nearer end, as numpy does, makes t = 0 and
	// t = 1 exact and keeps the result between lo and hi.
	if t < 0.5 {
		return lo + (hi-lo)*t
	}
	return hi - (hi-lo)*(1-t)
}
