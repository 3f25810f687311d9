package stats

import (
	"math"
	"testing"
)

// Ensure the Kolmogorov survival function matches scipy on both sides of
// the series cut-over and far into the tail.
func TestKolmogorovSF(t *testing.T) {
	// want: scipy 1.10.1 special.kolmogorov(x); mpmath's 50-digit
	// 2·Σ(−1)^(k−1)·exp(−2k²x²) agrees to 1e-16 for x ≥ 0.3.
	tests := []struct{ x, want float64 }{
		{0, 1},
		{0.05, 1},
		{0.3, 0.9999906941986655},
		{0.5, 0.9639452436648751},
		{0.8, 0.5441424115741981},
		{0.82, 0.5119717052984973},
		{0.83, 0.4961909953505036},
		{1, 0.26999967167735456},
		{1.3581015157406195, 0.04999921875000761},
		{2, 0.0006709252557796953},
		{3, 3.045995948942526e-08},
		{5, 3.8574996959278356e-22},
		{10, 2.767793053473475e-87},
	}
	for _, tt := range tests {
		got := kolmogorovSF(tt.x)
		if math.Abs(got-tt.want) > 1e-12*tt.want {
			t.Errorf("kolmogorovSF(%v) = %.17g, want %.17g", tt.x, got, tt.want)
		}
	}
}
