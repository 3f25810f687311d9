package rollup

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"time"

	"github.com/understudy-ml/understudy/pkg/store"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// A backend's snapshot answers the rollup reads of store.Snapshot by
// handing these functions a reader of one segment: a query of the rollup
// rows of one span in a range of starts. The functions cover the window
// with segments and add the rows up.

// ShadowRow is one stored shadow rollup row, as a backend reads it.
type ShadowRow struct {
	Shadow, Version, Primary, PrimaryVersion string
	Start                                    int64
	Pairs, OK, Errors, Timeouts              int64
	ClassPairs, DisagreePairs                int64
	ClassRows, AgreeRows                     int64
	FloatPairs, Elements                     int64
	SumAbs, SumSq                            float64
	MaxAbs                                   *float64
	// Diff, Latency and PrimaryLatency are the histograms in their storage
	// form (store.MergeEncoded); nil for none.
	Diff, Latency, PrimaryLatency []byte
	CPUUS, CPURuns                int64
}

// ShadowReader calls fn with each shadow rollup row of seg's span whose
// start is in [seg.Lo, seg.Hi), of shadow and version ("" for every one).
// fn keeps nothing of the row, so the reader may reuse it.
type ShadowReader func(ctx context.Context, shadow, version string, seg Segment, fn func(*ShadowRow) error) error

// PrimaryReader calls fn with the primary rollups of seg summed per model
// version.
type PrimaryReader func(ctx context.Context, seg Segment, fn func(store.PrimaryCounts) error) error

// ConfusionReader calls fn with the confusion rollups of seg for a shadow
// version, summed per pair of classes.
type ConfusionReader func(ctx context.Context, shadow, version string, seg Segment, fn func(store.ConfusionCell) error) error

// addRow adds one rollup row to c.
func addRow(c *store.ShadowCounts, o *ShadowRow) error {
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
	return errors.Join(c.Diff.AddEncoded(o.Diff), c.Latency.AddEncoded(o.Latency), c.PrimaryLatency.AddEncoded(o.PrimaryLatency))
}

// ShadowSummaries implements store.Snapshot.ShadowSummaries over read.
func ShadowSummaries(ctx context.Context, f store.RollupFilter, read ShadowReader) ([]store.ShadowSummary, error) {
	lo, hi := MinuteRange(f.From, f.To)
	step := int64(f.Step / time.Minute)
	if f.Step > 0 {
		step = max(1, step)
	}
	type acc struct {
		sum       *store.ShadowSummary
		primaries map[understudy.ModelRef]bool
		steps     map[int64]*store.SeriesPoint
	}
	byKey := map[understudy.ModelRef]*acc{}
	var all []*acc
	for _, seg := range Cover(lo, hi, SpansFor(step)) {
		err := read(ctx, f.Shadow, f.Version, seg, func(r *ShadowRow) error {
			k := understudy.ModelRef{Name: r.Shadow, Version: r.Version}
			a := byKey[k]
			if a == nil {
				a = &acc{sum: &store.ShadowSummary{Shadow: r.Shadow, Version: r.Version, Total: store.NewShadowCounts()},
					primaries: map[understudy.ModelRef]bool{}, steps: map[int64]*store.SeriesPoint{}}
				byKey[k] = a
				all = append(all, a)
			}
			a.primaries[understudy.ModelRef{Name: r.Primary, Version: r.PrimaryVersion}] = true
			if step == 0 {
				return addRow(&a.sum.Total, r)
			}
			// Each row is decoded once, into its step; the total is the
			// sum of the steps.
			start := StartOf(r.Start, step)
			p := a.steps[start]
			if p == nil {
				p = &store.SeriesPoint{Start: time.Unix(start*60, 0).UTC(), ShadowCounts: store.NewShadowCounts()}
				a.steps[start] = p
			}
			return addRow(&p.ShadowCounts, r)
		})
		if err != nil {
			return nil, err
		}
	}
	out := make([]store.ShadowSummary, 0, len(all))
	for _, a := range all {
		sm := a.sum
		for p := range a.primaries {
			sm.Primaries = append(sm.Primaries, p)
		}
		slices.SortFunc(sm.Primaries, understudy.CompareRefs)
		for _, p := range a.steps {
			sm.Series = append(sm.Series, *p)
		}
		// Summed in time order, so that the same rows always give the same
		// floating-point sums.
		slices.SortFunc(sm.Series, func(a, b store.SeriesPoint) int { return a.Start.Compare(b.Start) })
		for i := range sm.Series {
			sm.Total.Merge(&sm.Series[i].ShadowCounts)
		}
		out = append(out, *sm)
	}
	slices.SortFunc(out, func(a, b store.ShadowSummary) int {
		return understudy.CompareRefs(understudy.ModelRef{Name: a.Shadow, Version: a.Version}, understudy.ModelRef{Name: b.Shadow, Version: b.Version})
	})
	return out, nil
}

// PrimaryCounts implements store.Snapshot.PrimaryCounts over read.
func PrimaryCounts(ctx context.Context, from, to time.Time, read PrimaryReader) ([]store.PrimaryCounts, error) {
	lo, hi := MinuteRange(from, to)
	byRef := map[understudy.ModelRef]*store.PrimaryCounts{}
	for _, seg := range Cover(lo, hi, Spans) {
		err := read(ctx, seg, func(p store.PrimaryCounts) error {
			k := understudy.ModelRef{Name: p.Model, Version: p.Version}
			if q := byRef[k]; q != nil {
				q.Requests += p.Requests
				q.Errors += p.Errors
				q.CPUUS += p.CPUUS
				q.CPURuns += p.CPURuns
			} else {
				byRef[k] = &p
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	out := make([]store.PrimaryCounts, 0, len(byRef))
	for _, p := range byRef {
		out = append(out, *p)
	}
	slices.SortFunc(out, func(a, b store.PrimaryCounts) int {
		return understudy.CompareRefs(understudy.ModelRef{Name: a.Model, Version: a.Version}, understudy.ModelRef{Name: b.Model, Version: b.Version})
	})
	return out, nil
}

// Confusion implements store.Snapshot.Confusion over read.
func Confusion(ctx context.Context, shadow, version string, from, to time.Time, read ConfusionReader) ([]store.ConfusionCell, error) {
	lo, hi := MinuteRange(from, to)
	cells := map[[2]int64]int64{}
	for _, seg := range Cover(lo, hi, Spans) {
		err := read(ctx, shadow, version, seg, func(c store.ConfusionCell) error {
			cells[[2]int64{c.Primary, c.Shadow}] += c.N
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	out := make([]store.ConfusionCell, 0, len(cells))
	for k, n := range cells {
		if n != 0 {
			out = append(out, store.ConfusionCell{Primary: k[0], Shadow: k[1], N: n})
		}
	}
	slices.SortFunc(out, func(a, b store.ConfusionCell) int {
		return cmp.Or(cmp.Compare(a.Primary, b.Primary), cmp.Compare(a.Shadow, b.Shadow))
	})
	return out, nil
}
