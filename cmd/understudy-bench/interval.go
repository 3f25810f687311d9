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
	var n int64
	for _, c := range h {
		n += c
	}
	if n == 0 {
		return 0
	}
	rank := int64(math.Ceil(q * float64(n)))
	var seen int64
	for i, c := range h {
		if seen += c; seen >= rank {
			return binUpper(i)
		}
	}
	return binUpper(binCount - 1)
}

// quantileRatioInterval is a 95% percentile-bootstrap interval for the
// ratio of pooled q-quantiles, b over a, from paired rounds a[i], b[i].
// Whole pairs of rounds are resampled, not single requests: on a shared
// machine latencies within a round move together (a neighbour's burst
// slows a whole round), and resampling requests would hide that.
func quantileRatioInterval(a, b [][]time.Duration, q float64) (lo, hi float64) {
	ha, hb := make([]*histogram, len(a)), make([]*histogram, len(b))
	for i := range a {
		ha[i], hb[i] = newHistogram(a[i]), newHistogram(b[i])
	}
	const reps = 2000
	r := rand.New(rand.NewPCG(1, 2))
	out := make([]float64, reps)
	var sa, sb histogram
	for k := range out {
		clear(sa[:])
		clear(sb[:])
		for range a {
			i := r.IntN(len(a))
			for j := range sa {
				sa[j] += ha[i][j]
				sb[j] += hb[i][j]
			}
		}
		out[k] = float64(sb.quantile(q)) / float64(sa.quantile(q))
	}
	slices.Sort(out)
	return out[reps*25/1000], out[reps*975/1000-1]
}
