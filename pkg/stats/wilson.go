package stats

import (
	"fmt"
	"math"
)

// Wilson returns the Wilson score interval for a binomial proportion,
// (p̂ + z²/2n ∓ z·√(p̂(1−p̂)/n + z²/4n²)) / (1 + z²/n) with p̂ = successes/n,
// and (0, 1) when n is 0; z is the standard normal quantile (Z95 for 95%).
func Wilson(successes, n int, z float64) (lo, hi float64) {
	if n < 0 || successes < 0 || successes > n {
		panic(fmt.Sprintf("stats: Wilson(%d, %d): want 0 <= successes <= n", successes, n))
	}
	if n == 0 {
		return 0, 1
	}
	x, nf, z2 := float64(successes), float64(n), z*z
	// Multiplying through by 2n gives lo, hi = (A ∓ B) / 2(n + z²) with
	// A = 2x + z² and B = z·√(z² + 4x(n−x)/n). A − B cancels badly when
	// x is small, so lo uses (A − B) = (A² − B²)/(A + B) = 4x²(1 + z²/n)/(A + B),
	// which simplifies to lo = 2x² / (n(A + B)): a ratio of positive terms.
	a := 2*x + z2
	b := math.Abs(z) * math.Sqrt(z2+4*x*(nf-x)/nf)
	lo = 2 * x * x / (nf * (a + b))
	hi = (a + b) / (2 * (nf + z2))
	// At x = n, hi is 1 only up to rounding.
	return lo, min(hi, 1)
}
