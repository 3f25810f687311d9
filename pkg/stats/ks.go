package stats

import (
	"math"
	"slices"
)

// ksExactMax is the largest sample size for which KS2 computes the exact
// p-value: scipy's threshold for method='auto', above which the path count,
// O(D·m·n), gets slow while the limit law is within a few percent.
const ksExactMax = 10000

// KS2 returns the two-sample Kolmogorov–Smirnov statistic
// D = maxₓ |Fₐ(x) − F_b(x)|, evaluated after each distinct pooled value so
// that ties are handled, and its two-sided p-value P(D′ ≥ D) under the null
// of one continuous distribution, which is exact (the Hodges lattice-path
// count, by Viehmann's recursion for 1 − p) when both sizes are at most
// 10000, as scipy.stats.ks_2samp's default method='auto' is, and otherwise
// the Kolmogorov limit Q(√(mn/(m+n))·D) with Q(λ) = 2Σₖ(−1)ᵏ⁻¹e^(−2k²λ²) and
// no small-sample correction; it returns (NaN, NaN) when a sample is empty
// or holds NaN, and neither sorts nor modifies a and b.
func KS2(a, b []float64) (d, pvalue float64) {
	m, n := len(a), len(b)
	if m == 0 || n == 0 || slices.ContainsFunc(a, math.IsNaN) || slices.ContainsFunc(b, math.IsNaN) {
		return math.NaN(), math.NaN()
	}
	sa, sb := slices.Clone(a), slices.Clone(b)
	slices.Sort(sa)
	slices.Sort(sb)

	// Step through the distinct values of both samples and, after taking
	// every copy of the value from both, compare i/m with j/n. Comparing
	// before a tie is fully consumed would count a spurious gap. Scaling by
	// m·n keeps the comparison in integers, so D carries a single rounding.
	var k int64 // max |i·n − j·m| = D·m·n
	i, j := 0, 0
	for i < m || j < n {
		var x float64
		switch {
		case j == n || (i < m && sa[i] <= sb[j]):
			x = sa[i]
		default:
			x = sb[j]
		}
		for i < m && sa[i] == x {
			i++
		}
		for j < n && sb[j] == x {
			j++
		}
		k = max(k, abs(int64(i)*int64(n)-int64(j)*int64(m)))
	}
	d = float64(k) / (float64(m) * float64(n))
	if k == 0 {
		return 0, 1
	}
	// Ties make the true null distribution more concentrated than the
	// continuous one used here, so with ties p is conservative (too large),
	// as in scipy and R.
	if max(m, n) <= ksExactMax {
		return d, ksExactSF(m, n, k)
	}
	en := float64(m) * float64(n) / float64(m+n)
	return d, kolmogorovSF(math.Sqrt(en) * d)
}

// ksExactSF returns P(D ≥ k/(m·n)) for the two-sample statistic with sizes
// m and n, for k > 0.
//
// Under the null every ordering of the pooled sample is equally likely, so
// the merged sample is a uniformly random lattice path from (0, 0) to (m, n)
// and D ≥ k/(mn) exactly when the path touches a point with
// |i·n − j·m| ≥ k. Let A(i, j) be the probability that a uniformly random
// path from (0, 0) to (i, j) has touched such a point. Such a path arrives
// from (i−1, j) with probability i/(i+j), so
// A(i, j) = 1 outside the band and (i·A(i−1, j) + j·A(i, j−1))/(i+j) inside.
// Every term is positive, so a small p-value keeps its relative accuracy
// instead of being 1 minus a probability close to 1 (Viehmann 2021,
// arXiv:2102.08037). Only the band, about 2k/m cells per column, is visited.
func ksExactSF(m, n int, k int64) float64 {
	m64, n64 := int64(m), int64(n)
	// col holds A(i, ·) for the column being built; cells never inside the
	// band so far hold 1, as the recursion needs.
	col := make([]float64, n+1)
	for j := range col {
		if int64(j)*m64 >= k {
			col[j] = 1
		}
	}
	for i := int64(1); i <= m64; i++ {
		// Inside means |i·n − j·m| < k, i.e. (i·n − k)/m < j < (i·n + k)/m.
		lo := int64(0)
		if i*n64 >= k {
			lo = (i*n64-k)/m64 + 1
		}
		hi := min((i*n64+k-1)/m64, n64)
		below := 1.0 // A(i, lo−1): outside the band, or unused when lo = 0
		for j := lo; j <= hi; j++ {
			col[j] = (float64(i)*col[j] + float64(j)*below) / float64(i+j)
			below = col[j]
		}
	}
	return col[n]
}

// kolmogorovSF returns the survival function of the Kolmogorov distribution,
// Q(x) = P(K > x) = 2 Σₖ₌₁ (−1)ᵏ⁻¹ exp(−2k²x²).
func kolmogorovSF(x float64) float64 {
	if x <= 0 {
		return 1
	}
	if x < 0.82 {
		// The alternating series converges slowly for small x and its sum
		// cancels to nearly 1; the Jacobi theta form of the CDF,
		// √(2π)/x · Σₖ₌₁ exp(−(2k−1)²π²/(8x²)), converges fast there. The
		// cut-over is the one scipy.special.kolmogorov uses.
		var cdf float64
		w := math.Pi * math.Pi / (8 * x * x)
		for k := 1; k < 100; k++ {
			t := math.Exp(-float64((2*k-1)*(2*k-1)) * w)
			cdf += t
			if t <= cdf*1e-17 {
				break
			}
		}
		return 1 - math.Sqrt(2*math.Pi)/x*cdf
	}
	var sf float64
	for k := 1; k < 100; k++ {
		t := math.Exp(-2 * float64(k*k) * x * x)
		if k%2 == 0 {
			t = -t
		}
		sf += t
		if math.Abs(t) <= math.Abs(sf)*1e-17 {
			break
		}
	}
	return min(1, max(0, 2*sf))
}

func abs(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}
