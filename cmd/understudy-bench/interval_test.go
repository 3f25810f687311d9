package main

import (
	"math/rand/v2"
	"testing"
	"time"
)

// drawRounds draws n rounds of m latencies, each round's spread scaled by a
// round effect as on a shared machine, and the whole multiplied by scale.
func drawRounds(r *rand.Rand, n, m int, scale float64) [][]time.Duration {
	out := make([][]time.Duration, n)
	for i := range out {
		effect := 1 + 0.3*r.Float64()
		for range m {
			us := 100 + 50*r.ExpFloat64()*effect
			out[i] = append(out[i], time.Duration(us*scale*float64(time.Microsecond)))
		}
	}
	return out
}

// Ensure the interval holds the true ratio about as often as it claims,
// and is narrow enough to tell a 30% slowdown from none.
func TestQuantileRatioIntervalCoverage(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	const trials, scale = 40, 1.3
	covered := 0
	for range trials {
		a, b := drawRounds(r, 12, 2000, 1), drawRounds(r, 12, 2000, scale)
		lo, hi := quantileRatioInterval(a, b, 0.99, 1)
		if lo <= scale && scale <= hi {
			covered++
		}
		if lo <= 1 {
			t.Errorf("interval %.3f–%.3f does not tell a 30%% slowdown from none", lo, hi)
		}
	}
	// Nominally 95%; a percentile bootstrap over 12 rounds covers a little
	// less, and 40 trials leave room for chance.
	if covered < trials*8/10 {
		t.Errorf("the interval held the true ratio in %d of %d trials, want at least 80%%", covered, trials)
	}
	t.Logf("coverage %d of %d", covered, trials)
}

func TestHistogramQuantileIsWithinOnePercent(t *testing.T) {
	var lat []time.Duration
	for i := 1; i <= 1000; i++ {
		lat = append(lat, time.Duration(i)*time.Millisecond)
	}
	got := newHistogram(lat).quantile(0.99)
	if want := 990 * time.Millisecond; got < want || float64(got) > 1.01*float64(want) {
		t.Errorf("p99 %v, want %v to 1%% above", got, want)
	}
}

// drawBurstyPairs draws n pairs of rounds of m latencies each, where a
// host burst lasts about eight pairs and slows each side by an amount of
// its own that holds for the whole burst, as when a neighbour's periodic
// work falls in step with the rounds. Both sides are alike in law, so the
// true ratio is 1, but pairs within a burst are not independent.
func drawBurstyPairs(r *rand.Rand, n, m int) (a, b [][]time.Duration) {
	round := func(effect float64) []time.Duration {
		out := make([]time.Duration, m)
		for i := range out {
			us := 100 + 50*r.ExpFloat64()*effect
			out[i] = time.Duration(us * float64(time.Microsecond))
		}
		return out
	}
	ea, eb := 1.0, 1.0
	for range n {
		if ea > 1 && r.Float64() < 1.0/8 {
			ea, eb = 1, 1
		} else if ea == 1 && r.Float64() < 1.0/16 {
			ea, eb = 1+3*r.Float64(), 1+3*r.Float64()
		}
		a, b = append(a, round(ea)), append(b, round(eb))
	}
	return a, b
}

// Ensure that when bursts outlast a pair of rounds, drawing pairs in
// blocks keeps the interval honest: with no difference between the sides
// it must hold 1 about as often as it claims, where drawing single pairs
// holds it less often.
func TestQuantileRatioIntervalBlocksCoverBurstyRounds(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	const trials = 20
	coveredBlocks, coveredPairs := 0, 0
	for range trials {
		a, b := drawBurstyPairs(r, 480, 200)
		if lo, hi := quantileRatioInterval(a, b, 0.99, 8); lo <= 1 && 1 <= hi {
			coveredBlocks++
		}
		if lo, hi := quantileRatioInterval(a, b, 0.99, 1); lo <= 1 && 1 <= hi {
			coveredPairs++
		}
	}
	// The draws are seeded, so these counts are the same on every run.
	if coveredBlocks < trials*8/10 {
		t.Errorf("blocks of 8 held the true ratio in %d of %d trials, want at least 80%%", coveredBlocks, trials)
	}
	if coveredPairs >= coveredBlocks {
		t.Errorf("single pairs held the true ratio in %d trials and blocks in %d: this case does not need blocks", coveredPairs, coveredBlocks)
	}
	t.Logf("coverage: blocks of 8 %d of %d, single pairs %d of %d", coveredBlocks, trials, coveredPairs, trials)
}
