package stats

import (
	"fmt"
	"math"
)

// Diff summarises the element-wise differences between two regression
// outputs.
type Diff struct {
	N         int     // number of pairs
	MAE       float64 // mean absolute difference, Σ|aᵢ−bᵢ|/N
	RMSE      float64 // root mean squared difference, √(Σ(aᵢ−bᵢ)²/N)
	MaxAbs    float64 // largest |aᵢ−bᵢ|
	WithinTol float64 // share of pairs with |aᵢ−bᵢ| ≤ tol
}

// Diffs returns the [Diff] summary of a against b, with tol the tolerance
// for WithinTol; a NaN difference (from a NaN or from ∞−∞) counts as outside
// tol and makes MAE, RMSE and MaxAbs NaN, and empty inputs give the zero
// Diff.
func Diffs(a, b []float64, tol float64) Diff {
	if len(a) != len(b) {
		panic(fmt.Sprintf("stats: Diffs: %d values against %d", len(a), len(b)))
	}
	if len(a) == 0 {
		return Diff{}
	}
	var sumAbs, sumSq sum
	var maxAbs float64
	within := 0
	for i := range a {
		d := math.Abs(a[i] - b[i])
		sumAbs.add(d)
		sumSq.add(d * d)
		if d > maxAbs || math.IsNaN(d) {
			maxAbs = d
		}
		if d <= tol {
			within++
		}
	}
	n := float64(len(a))
	return Diff{
		N:         len(a),
		MAE:       sumAbs.value() / n,
		RMSE:      math.Sqrt(sumSq.value() / n),
		MaxAbs:    maxAbs,
		WithinTol: float64(within) / n,
	}
}

// sum is a Neumaier compensated sum: over millions of rows a plain running
// sum loses about log10(N) digits, which the compensation term recovers.
type sum struct{ s, c float64 }

func (k *sum) add(x float64) {
	t := k.s + x
	if math.Abs(k.s) >= math.Abs(x) {
		k.c += (k.s - t) + x
	} else {
		k.c += (x - t) + k.s
	}
	k.s = t
}

func (k *sum) value() float64 {
	// An infinite term leaves ∞−∞ = NaN in the compensation.
	if math.IsInf(k.s, 0) {
		return k.s
	}
	return k.s + k.c
}
