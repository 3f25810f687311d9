package store

import "math"

// Buckets is a fixed log-spaced bucket layout: bucket 0 holds values below
// Lower(1) (zero included), bucket i in 1..N holds [Lower(i), Lower(i+1)),
// and bucket N+1 holds everything from Lower(N+1) up, +Inf included.
type Buckets struct {
	// Either Min and Ratio, with Lower(i) = Min·Ratioⁱ⁻¹, or MinExp and
	// PerDecade, with Lower(i) = 10^(MinExp + (i−1)/PerDecade), which puts
	// every power of ten exactly on an edge.
	Min       float64
	Ratio     float64
	MinExp    int
	PerDecade int
	N         int
	lnR       float64
}

// LatencyBuckets hold latencies in microseconds: 1% wide from 1 µs to
// 10¹⁰ µs (2.8 hours). A bucket's geometric midpoint is within 0.5% of
// every value in it, so a percentile read from them is within 0.5% of the
// exact one; latencies under 1 µs (that is, 0) are exact.
var LatencyBuckets = &Buckets{Min: 1, Ratio: 1.01, N: 2315, lnR: math.Log(1.01)}

// DiffBuckets hold per-pair max|Δ|: 50 per decade (4.7% wide) from 10⁻¹²
// to 10¹². Whether a pair is within a tolerance is exact for every bucket
// except the one holding the tolerance, where the count is interpolated:
// only pairs within a factor 1.047 of the tolerance can be misjudged, and
// powers of ten are bucket edges, so tolerances such as 1e-3 are exact.
var DiffBuckets = &Buckets{MinExp: -12, PerDecade: 50, Ratio: math.Pow(10, 1.0/50), N: 1200, lnR: math.Log(10) / 50}

// Index returns the bucket of v; NaN goes to bucket 0.
func (b *Buckets) Index(v float64) int {
	lo := b.Lower(1)
	switch {
	case !(v >= lo):
		return 0
	case v >= b.Lower(b.N+1):
		return b.N + 1
	}
	i := int(math.Floor(math.Log(v/lo)/b.lnR)) + 1
	i = min(max(i, 1), b.N+1)
	// Correct the rounding of the logarithm at bucket edges, so that Index
	// agrees with Lower.
	if i > 1 && v < b.Lower(i) {
		i--
	} else if i <= b.N && v >= b.Lower(i+1) {
		i++
	}
	return i
}

// Lower returns the smallest value of bucket i (0 for bucket 0).
func (b *Buckets) Lower(i int) float64 {
	switch {
	case i <= 0:
		return 0
	case b.PerDecade > 0:
		e, f := (i-1)/b.PerDecade, (i-1)%b.PerDecade
		x := math.Pow10(b.MinExp + e)
		if f == 0 {
			return x
		}
		return x * math.Pow(10, float64(f)/float64(b.PerDecade))
	}
	return b.Min * math.Pow(b.Ratio, float64(i-1))
}

// Upper returns the bound above bucket i (+Inf for the last bucket).
func (b *Buckets) Upper(i int) float64 {
	if i > b.N {
		return math.Inf(1)
	}
	return b.Lower(i + 1)
}

// Mid is the value that stands for bucket i: 0 for bucket 0, the lower
// bound of the last bucket, and the geometric midpoint of the others.
func (b *Buckets) Mid(i int) float64 {
	switch {
	case i <= 0:
		return 0
	case i > b.N:
		return b.Lower(i)
	}
	return b.Lower(i) * math.Sqrt(b.Ratio)
}

// Histogram counts values in the buckets of a Buckets.
type Histogram struct {
	B      *Buckets
	Counts []int64 // by bucket index, len B.N+2
	Total  int64
}

// NewHistogram returns an empty histogram over b.
func NewHistogram(b *Buckets) *Histogram {
	return &Histogram{B: b, Counts: make([]int64, b.N+2)}
}

// Add counts v once.
func (h *Histogram) Add(v float64) {
	h.Counts[h.B.Index(v)]++
	h.Total++
}

// Merge adds the counts of o, which must use the same buckets.
func (h *Histogram) Merge(o *Histogram) {
	for i, c := range o.Counts {
		h.Counts[i] += c
	}
	h.Total += o.Total
}

// Quantile estimates the type-7 q-quantile (see stats.Quantile) of the
// counted values: it finds the buckets of the two order statistics that
// the exact quantile interpolates between and interpolates between their
// midpoints. It returns NaN for an empty histogram.
func (h *Histogram) Quantile(q float64) float64 {
	if h.Total == 0 {
		return math.NaN()
	}
	pos := float64(h.Total-1) * q
	r := int64(math.Floor(pos))
	frac := pos - float64(r)
	lo := h.B.Mid(h.bucketOfRank(r))
	if frac == 0 || r+1 >= h.Total {
		return lo
	}
	hi := h.B.Mid(h.bucketOfRank(r + 1))
	return lo + frac*(hi-lo)
}

// bucketOfRank returns the bucket of the value of rank r (from 0).
func (h *Histogram) bucketOfRank(r int64) int {
	var seen int64
	for i, c := range h.Counts {
		if seen += c; seen > r {
			return i
		}
	}
	return len(h.Counts) - 1
}

// AtMost estimates how many counted values are ≤ x: buckets wholly below x
// count fully, and the bucket holding x in proportion to log(x/lower) over
// its log width. Bucket 0 counts fully as soon as x ≥ 0.
func (h *Histogram) AtMost(x float64) float64 {
	if x < 0 || h.Total == 0 {
		return 0
	}
	k := h.B.Index(x)
	var n float64
	for i := 0; i < k; i++ {
		n += float64(h.Counts[i])
	}
	switch {
	case k == 0:
		n += float64(h.Counts[0])
	case k > h.B.N:
		if math.IsInf(x, 1) {
			n += float64(h.Counts[k])
		}
	case x > h.B.Lower(k):
		n += float64(h.Counts[k]) * math.Log(x/h.B.Lower(k)) / h.B.lnR
	}
	return n
}
