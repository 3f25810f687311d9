package store

import (
	"time"

	"github.com/understudy-ml/understudy/pkg/understudy"
)

// A backend keeps rollups of the rows it stores, at every span of
// store/rollup (minutes, hours and days), committed with the rows they
// count so that they never disagree with them. A report then reads a few
// hundred rollup rows whatever its window and the traffic. The values below
// are what the rollups hold, summed over a window; store/rollup says how a
// row is counted.

// PrimaryCounts are the primary's rollups of one model version.
type PrimaryCounts struct {
	Model, Version string
	Requests       int64
	Errors         int64 // predictions whose status is not ok
	CPUUS, CPURuns int64 // CPU time summed over the CPURuns runs that measured it
}

// RollupFilter selects shadow rollups. Shadow and Version "" select every
// one. [From, To) is widened to whole minutes; a zero From means from the
// first minute stored, a zero To up to the last.
type RollupFilter struct {
	Shadow, Version string
	From, To        time.Time
	// Step, a whole number of minutes, cuts time into the series' steps,
	// aligned to multiples of Step since the Unix epoch (an hour starts on
	// the hour, a day at midnight UTC); 0 returns no series.
	Step time.Duration
}

// ShadowCounts are summed shadow rollups.
type ShadowCounts struct {
	// Pairs are the stored shadow runs: OK + Errors + Timeouts.
	Pairs, OK, Errors, Timeouts int64
	// ClassPairs are ok pairs with a class comparison, DisagreePairs those
	// with agreement < 1; ClassRows and AgreeRows count the rows of their
	// first class output.
	ClassPairs, DisagreePairs, ClassRows, AgreeRows int64
	// FloatPairs are ok pairs with a float comparison. SumAbs and SumSq
	// are Σ|Δ| and Σ|Δ|² over Elements elements (pairs written without an
	// element count are left out of those three).
	FloatPairs, Elements int64
	SumAbs, SumSq        float64
	// MaxAbs is the largest per-pair max|Δ|; nil without float pairs.
	MaxAbs         *float64
	CPUUS, CPURuns int64
	// Diff counts per-pair max|Δ| of float pairs; Latency and
	// PrimaryLatency the two latencies (µs) of ok pairs, PrimaryLatency
	// leaving out pairs stored without it.
	Diff, Latency, PrimaryLatency *Histogram
}

// NewShadowCounts returns zero counts with empty histograms.
func NewShadowCounts() ShadowCounts {
	return ShadowCounts{Diff: NewHistogram(DiffBuckets), Latency: NewHistogram(LatencyBuckets), PrimaryLatency: NewHistogram(LatencyBuckets)}
}

// Merge adds o to c.
func (c *ShadowCounts) Merge(o *ShadowCounts) {
	c.Pairs += o.Pairs
	c.OK += o.OK
	c.Errors += o.Errors
	c.Timeouts += o.Timeouts
	c.ClassPairs += o.ClassPairs
	c.DisagreePairs += o.DisagreePairs
	c.ClassRows += o.ClassRows
	c.AgreeRows += o.AgreeRows
	c.FloatPairs += o.FloatPairs
	c.Elements += o.Elements
	c.SumAbs += o.SumAbs
	c.SumSq += o.SumSq
	if o.MaxAbs != nil && (c.MaxAbs == nil || *o.MaxAbs > *c.MaxAbs) {
		m := *o.MaxAbs
		c.MaxAbs = &m
	}
	c.CPUUS += o.CPUUS
	c.CPURuns += o.CPURuns
	c.Diff.Merge(o.Diff)
	c.Latency.Merge(o.Latency)
	c.PrimaryLatency.Merge(o.PrimaryLatency)
}

// SeriesPoint is one step of a series.
type SeriesPoint struct {
	Start time.Time
	ShadowCounts
}

// ShadowSummary is the rollups of one shadow version.
type ShadowSummary struct {
	Shadow, Version string
	// Primaries are the primary versions it was compared with, ordered by
	// name and version.
	Primaries []understudy.ModelRef
	// Total is the sum of the window; with a Step, the sum of the Series
	// in time order, so that the same rows always give the same
	// floating-point sums.
	Total ShadowCounts
	// Series has the steps with data, oldest first.
	Series []SeriesPoint
}

// ConfusionCell counts rows with one pair of predicted classes.
type ConfusionCell struct {
	Primary, Shadow int64
	N               int64
}

// PairSamples are raw values of a shadow version's pairs.
type PairSamples struct {
	// Latency and PrimaryLatency are the two latencies (µs) of ok pairs;
	// PrimaryLatency leaves out pairs stored without it.
	Latency, PrimaryLatency []float64
	// MaxAbsDiff are the per-pair max|Δ| of ok float pairs.
	MaxAbsDiff []float64
}

// AccuracyCounts compare a shadow version with the primary on labelled
// requests whose shadow run is ok. Classes are those of the first row of
// the first class output (the pair's PrimaryClass and ShadowClass), scores
// the first row's top score of the first float output (PrimaryScore and
// ShadowScore of its comparison).
type AccuracyCounts struct {
	// Labelled counts the labelled requests with an ok shadow run.
	Labelled int64
	// NonIntegral counts labels that are not whole numbers, and NoClass
	// pairs without both predicted classes.
	NonIntegral, NoClass int64
	// Against the class: correct answers of each, and B (primary right,
	// shadow wrong) and C (primary wrong, shadow right). A missing class is
	// never right, and B and C count only pairs that have both classes.
	PrimaryCorrect, ShadowCorrect, B, C int64
	// Against the top score, over the Scored pairs that have both: the
	// summed absolute errors, and how often each was strictly closer to
	// the label.
	Scored                      int64
	PrimaryAbsErr, ShadowAbsErr float64
	PrimaryCloser, ShadowCloser int64
}
