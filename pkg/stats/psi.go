package stats

import (
	"fmt"
	"math"
)

// PSI returns the Population Stability Index Σᵢ (aᵢ − eᵢ)·ln(aᵢ/eᵢ) between
// two category distributions given as counts, where eᵢ and aᵢ are the
// expected and actual counts divided by their totals and a share of exactly
// zero is replaced by eps (the other shares are not renormalised).
func PSI(expected, actual []float64, eps float64) float64 {
	if len(expected) != len(actual) {
		panic(fmt.Sprintf("stats: PSI: %d expected categories, %d actual", len(expected), len(actual)))
	}
	if !(eps > 0) {
		// A zero share would otherwise make ln(a/e) infinite.
		panic(fmt.Sprintf("stats: PSI: eps %v, want > 0", eps))
	}
	eTotal, aTotal := total(expected, "expected"), total(actual, "actual")
	var psi float64
	for i := range expected {
		e, a := share(expected[i], eTotal, eps), share(actual[i], aTotal, eps)
		psi += (a - e) * math.Log(a/e)
	}
	return psi
}

func total(counts []float64, name string) float64 {
	var sum float64
	for i, c := range counts {
		if !(c >= 0) || math.IsInf(c, 1) {
			panic(fmt.Sprintf("stats: PSI: %s[%d] = %v, want a finite count >= 0", name, i, c))
		}
		sum += c
	}
	return sum
}

func share(count, total, eps float64) float64 {
	// A category nobody fell into, or a side with no rows at all, has share
	// zero, which eps stands in for.
	if count == 0 {
		return eps
	}
	return count / total
}
