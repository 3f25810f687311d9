package main

import (
	"math"
	"math/rand/v2"
	"slices"
	"time"
)

// Latencies are binned at 1% resolution from 1 µs to about 10 s, fine
// enough for a p99 and cheap to add up thousands of times.
const (
	binGrowth = 1.01
	binCount  = 1621 // log(1e7) / log(1.01), rounded up
)

func latencyBin(d time.Duration) int {
	us := float64(d) / float64(time.Microsecond)
	if us <= 1 {
		return 0
	}
	return min(int(math.Log(us)/math.Log(binGrowth)), binCount-1)
}

// binUpper is the latency at the top of bin i.
func binUpper(i int) time.Duration {
	return time.Duration(math.Pow(binGrowth, float64(i+1)) * float64(time.Microsecond))
}

type histogram [binCount]int64

func newHistogram(lat []time.Duration) *histogram {
	var h histogram
	for _, d := range lat {
		h[latencyBin(d)]++
	}
	return &h
}

// quantile is the upper edge of the bin holding the q-th quantile
// (0 < q < 1): within 1% of the sample quantile.
func (h *histogram) quantile(q float64) time.Duration {
	v, _ := h.quantileAbove(q, 0)
	return v
}

// quantileAbove is quantile for a histogram whose lowest under latencies
// were left out of its bins. It reports false if the quantile is among
// those.
func (h *histogram) quantileAbove(q float64, under int64) (time.Duration, bool) {
	n := under
	for _, c := range h {
		n += c
	}
	if n == 0 {
		return 0, true
	}
	rank := int64(math.Ceil(q * float64(n)))
	if under >= rank {
		return 0, false
	}
	seen := under
	for i, c := range h {
		if seen += c; seen >= rank {
			return binUpper(i), true
		}
	}
	return binUpper(binCount - 1), true
}

// bin is the index of the bin holding the q-th quantile, 0 < q <= 1.
func (h *histogram) bin(q float64) int {
	var n int64
	for _, c := range h {
		n += c
	}
	rank := max(int64(math.Ceil(q*float64(n))), 1)
	var seen int64
	for i, c := range h {
		if seen += c; seen >= rank {
			return i
		}
	}
	return binCount - 1
}

// quantileRatioInterval is a 95% percentile-bootstrap interval for the
// ratio of pooled q-quantiles, b over a, from paired rounds a[i], b[i].
// Whole pairs of rounds are resampled, not single requests: on a shared
// machine latencies within a round move together (a neighbour's burst
// slows a whole round), and resampling requests would hide that. Pairs
// are drawn in runs of block consecutive pairs (a moving-block bootstrap,
// wrapping at the end), because a burst can also outlast one pair of
// short rounds; block 1 resamples pairs one by one.
func quantileRatioInterval(a, b [][]time.Duration, q float64, block int) (lo, hi float64) {
	n := len(a)
	// Running sums over the pairs make a block's histogram one subtraction.
	pa, pb := make([]histogram, n+1), make([]histogram, n+1)
	var all histogram
	for i := range n {
		pa[i+1], pb[i+1] = pa[i], pb[i]
		for _, d := range a[i] {
			pa[i+1][latencyBin(d)]++
		}
		for _, d := range b[i] {
			pb[i+1][latencyBin(d)]++
		}
	}
	for x := range all {
		all[x] = pa[n][x] + pb[n][x]
	}
	// Only the bins from the pooled median up can hold a resample's upper
	// quantile in practice, so resamples add up those and keep the rest as
	// one count; a resample whose quantile falls below is added in full.
	from, to := all.bin(0.5), all.bin(1)+1
	below := func(p []histogram, i int) (c int64) {
		for x := range from {
			c += p[i][x]
		}
		return c
	}
	ua, ub := make([]int64, n+1), make([]int64, n+1)
	for i := range ua {
		ua[i], ub[i] = below(pa, i), below(pb, i)
	}
	type tail struct {
		under int64
		h     histogram
	}
	// add adds pairs [i, i+k) of p to t, wrapping past the last pair, over
	// bins [lo, hi).
	add := func(t *tail, p []histogram, u []int64, i, k, lo, hi int) {
		end := min(i+k, n)
		t.under += u[end] - u[i]
		for x := lo; x < hi; x++ {
			t.h[x] += p[end][x] - p[i][x]
		}
		if wrap := i + k - n; wrap > 0 {
			t.under += u[wrap]
			for x := lo; x < hi; x++ {
				t.h[x] += p[wrap][x]
			}
		}
	}
	type draw struct{ i, size int }
	// quantile is the q-quantile of the pairs draws picks from p.
	quantile := func(t *tail, p []histogram, u []int64, draws []draw) time.Duration {
		t.under = 0
		clear(t.h[:])
		for _, d := range draws {
			add(t, p, u, d.i, d.size, from, to)
		}
		if v, ok := t.h.quantileAbove(q, t.under); ok {
			return v
		}
		clear(t.h[:])
		for _, d := range draws {
			add(t, p, u, d.i, d.size, 0, binCount)
		}
		return t.h.quantile(q)
	}
	block = min(max(block, 1), n)
	const reps = 2000
	r := rand.New(rand.NewPCG(1, 2))
	out := make([]float64, reps)
	var sa, sb tail
	var draws []draw
	for k := range out {
		draws = draws[:0]
		for drawn := 0; drawn < n; drawn += block {
			draws = append(draws, draw{r.IntN(n), min(block, n-drawn)})
		}
		out[k] = float64(quantile(&sb, pb, ub, draws)) / float64(quantile(&sa, pa, ua, draws))
	}
	slices.Sort(out)
	return out[reps*25/1000], out[reps*975/1000-1]
}
