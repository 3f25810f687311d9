package store_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/understudy-ml/understudy/pkg/stats"
	"github.com/understudy-ml/understudy/pkg/store"
)

// Ensure the bucket layouts put every value in the bucket whose bounds
// hold it, powers of ten exactly on the |Δ| edges, and that percentiles
// read from a latency histogram are within 0.5% of the exact ones.
func TestHistogram(t *testing.T) {
	for _, b := range []*store.Buckets{store.LatencyBuckets, store.DiffBuckets} {
		for i := 1; i <= b.N+1; i++ {
			lo := b.Lower(i)
			if got := b.Index(lo); got != i {
				t.Fatalf("Index(Lower(%d) = %g) = %d", i, lo, got)
			}
			if got := b.Index(math.Nextafter(lo, 0)); got != i-1 {
				t.Fatalf("Index(just below Lower(%d)) = %d, want %d", i, got, i-1)
			}
		}
		assertEqual(t, "Index(0)", b.Index(0), 0)
		assertEqual(t, "Index(+Inf)", b.Index(math.Inf(1)), b.N+1)
	}
	for k := -12; k <= 12; k++ {
		assertEqual(t, fmt.Sprintf("edge 1e%d", k), store.DiffBuckets.Lower(1+50*(k+12)), math.Pow10(k))
	}

	rng := rand.New(rand.NewPCG(3, 4))
	h := store.NewHistogram(store.LatencyBuckets)
	var xs []float64
	for range 100000 {
		// Integer microseconds, log-normal around 2 ms, a few up to 1 s.
		x := math.Round(2000 * math.Exp(1.2*rng.NormFloat64()))
		xs = append(xs, x)
		h.Add(x)
	}
	slices.Sort(xs)
	for _, q := range []float64{0, 0.01, 0.1, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 1} {
		got, want := h.Quantile(q), stats.Quantile(xs, q)
		if math.Abs(got-want) > 0.005*want {
			t.Errorf("Quantile(%v) = %v, exact %v: relative error %.4f > 0.5%%", q, got, want, math.Abs(got-want)/want)
		}
	}
	// AtMost is exact at bucket edges and off by at most the count of the
	// bucket holding x elsewhere.
	d := store.NewHistogram(store.DiffBuckets)
	var ds []float64
	for range 10000 {
		x := math.Pow(10, -8+7*rng.Float64())
		ds = append(ds, x)
		d.Add(x)
	}
	for _, tol := range []float64{1e-6, 1e-3, 3e-3, 0.05} {
		var exact, inBucket int
		k := store.DiffBuckets.Index(tol)
		for _, x := range ds {
			if x <= tol {
				exact++
			}
			if store.DiffBuckets.Index(x) == k {
				inBucket++
			}
		}
		got := d.AtMost(tol)
		if math.Abs(got-float64(exact)) > float64(inBucket) {
			t.Errorf("AtMost(%g) = %v, exact %d, bucket holds %d", tol, got, exact, inBucket)
		}
		if tol == 1e-6 || tol == 1e-3 {
			assertEqual(t, fmt.Sprintf("AtMost(%g) at an edge", tol), got, float64(exact))
		}
	}
}

func assertEqual[T comparable](tb testing.TB, name string, got, want T) {
	tb.Helper()
	if got != want {
		tb.Errorf("%s = %v, want %v", name, got, want)
	}
}
