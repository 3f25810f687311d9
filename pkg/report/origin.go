package report

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/understudy-ml/understudy/pkg/store"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// This file is what the report does with the origin of shadow results
// (live, backfill, backtest): the origin filter, the reads of each
// origin's rollups, the traffic section that breaks the evidence down by
// origin, and the verdict's sentence on how much of it is live.
//
// The rule: the comparison (agreement, regression error, accuracy,
// McNemar, drift, errors, the disagreement lists) uses every pair of the
// origin filter, because a backfilled or backtested pair compares the two
// models on a real request as well as a live one does. Latency and CPU use
// live pairs only, whatever the filter, because only a live run is timed
// as served: backfill runs when the server is idle and backtest in a burst
// on stored traffic. Coverage counts live traffic only: backtest pairs
// were never offered to the shadow.

// OriginAll is the origin filter that selects every origin.
const OriginAll = "all"

// OriginNames lists the values of Query.Origin, in display order.
var OriginNames = append([]string{OriginAll}, understudy.Origins...)

// checkOrigins fills in the defaults of q's origins and checks them.
func checkOrigins(q *Query) error {
	if q.Origin == "" {
		q.Origin = OriginAll
	}
	if !slices.Contains(OriginNames, q.Origin) {
		return understudy.Errorf(understudy.EINVALID, "origin %q: want one of %s", q.Origin, strings.Join(OriginNames, ", "))
	}
	if q.LatencyOrigin == "" {
		q.LatencyOrigin = understudy.OriginLive
	}
	if !slices.Contains(understudy.Origins, q.LatencyOrigin) {
		return understudy.Errorf(understudy.EINVALID, "latency origin %q: want one of %s", q.LatencyOrigin, strings.Join(understudy.Origins, ", "))
	}
	return nil
}

// storeOrigin is the origin of store.Snapshot.Origin for a filter: "" is
// every origin.
func storeOrigin(o string) string {
	if o == OriginAll {
		return ""
	}
	return o
}

// summaries reads the shadow rollups of each origin at most once, with the
// series only when a chart needs them.
type summaries struct {
	snap   store.Snapshot
	filter store.RollupFilter
	got    map[string]map[understudy.ModelRef]*store.ShadowSummary
	series map[string]bool
}

func (s *summaries) read(ctx context.Context, origin string, series bool) (map[understudy.ModelRef]*store.ShadowSummary, error) {
	if m, ok := s.got[origin]; ok && (s.series[origin] || !series) {
		return m, nil
	}
	f := s.filter
	if !series {
		f.Step = 0
	}
	list, err := s.snap.Origin(origin).ShadowSummaries(ctx, f)
	if err != nil {
		return nil, err
	}
	m := make(map[understudy.ModelRef]*store.ShadowSummary, len(list))
	for i := range list {
		m[understudy.ModelRef{Name: list[i].Shadow, Version: list[i].Version}] = &list[i]
	}
	s.got[origin], s.series[origin] = m, series
	return m, nil
}

// shadowData is what the rollups say about one shadow version.
type shadowData struct {
	ref understudy.ModelRef
	// primaries are the primary versions it was compared with, of any
	// origin.
	primaries []understudy.ModelRef
	// filtered are the rollups of the origin filter's pairs and latency
	// those of the latency's origin, empty when there are none.
	filtered, latency *store.ShadowSummary
	// pairs counts the stored runs by origin.
	pairs map[string]int64
}

// readShadows reads the rollups of every shadow version with pairs of any
// origin in the window, ordered by name and version: a version that only
// has backtest pairs is listed too, whatever the filter.
func readShadows(ctx context.Context, snap store.Snapshot, f store.RollupFilter, q Query) ([]*shadowData, error) {
	s := &summaries{snap: snap, filter: f, got: map[string]map[understudy.ModelRef]*store.ShadowSummary{}, series: map[string]bool{}}
	// The charts' origins first, with their series, so that the counts of
	// the same origins below need no second read.
	lat, err := s.read(ctx, q.LatencyOrigin, true)
	if err != nil {
		return nil, err
	}
	if q.Origin != OriginAll {
		if _, err := s.read(ctx, q.Origin, true); err != nil {
			return nil, err
		}
	}
	byOrigin := map[string]map[understudy.ModelRef]*store.ShadowSummary{}
	for _, o := range understudy.Origins {
		if byOrigin[o], err = s.read(ctx, o, false); err != nil {
			return nil, err
		}
	}
	filtered := byOrigin[q.Origin] // read above with its series
	if q.Origin == OriginAll {
		// Without backfill or backtest pairs, all pairs are the live ones:
		// the rollups of live pairs are those of all, one read fewer.
		all := understudy.OriginLive
		if len(byOrigin[understudy.OriginBackfill])+len(byOrigin[understudy.OriginBacktest]) > 0 {
			all = ""
		}
		if filtered, err = s.read(ctx, all, true); err != nil {
			return nil, err
		}
	}

	seen := map[understudy.ModelRef]*shadowData{}
	var out []*shadowData
	for _, o := range understudy.Origins {
		for ref, sm := range byOrigin[o] {
			d := seen[ref]
			if d == nil {
				d = &shadowData{ref: ref, pairs: map[string]int64{}}
				seen[ref] = d
				out = append(out, d)
			}
			d.pairs[o] = sm.Total.Pairs
			for _, p := range sm.Primaries {
				if !slices.Contains(d.primaries, p) {
					d.primaries = append(d.primaries, p)
				}
			}
		}
	}
	for _, d := range out {
		slices.SortFunc(d.primaries, understudy.CompareRefs)
		d.filtered, d.latency = summaryOr(filtered, d.ref), summaryOr(lat, d.ref)
	}
	slices.SortFunc(out, func(a, b *shadowData) int { return understudy.CompareRefs(a.ref, b.ref) })
	return out, nil
}

// summaryOr returns ref's summary in m, or empty rollups.
func summaryOr(m map[understudy.ModelRef]*store.ShadowSummary, ref understudy.ModelRef) *store.ShadowSummary {
	if sm := m[ref]; sm != nil {
		return sm
	}
	return &store.ShadowSummary{Shadow: ref.Name, Version: ref.Version, Total: store.NewShadowCounts()}
}

// traffic counts the shadow's jobs by what became of them (see Traffic).
func (b *builder) traffic(ctx context.Context, d *shadowData, prim store.PrimaryCounts) (Traffic, error) {
	r := b.r
	sk, err := b.snap.SkipCounts(ctx, d.ref.Name, d.ref.Version, r.From, r.To)
	if err != nil {
		return Traffic{}, err
	}
	pending, err := b.snap.Pending(ctx, d.ref.Name, d.ref.Version, r.From, r.To)
	if err != nil {
		return Traffic{}, err
	}
	tot := &d.filtered.Total
	t := Traffic{Requests: prim.Requests,
		Live: d.pairs[understudy.OriginLive], Backfill: d.pairs[understudy.OriginBackfill], Backtest: d.pairs[understudy.OriginBacktest],
		SampledOut: sk.SampledOut, Deferred: sk.Deferred, Pending: pending, DropReasons: map[string]int64{},
		Mirrored: tot.Pairs, OK: tot.OK, Errors: tot.Errors, Timeouts: tot.Timeouts}
	t.NotBacktestable = sk.Reasons[understudy.DropNotBacktestable]
	t.Dropped = sk.Dropped - t.NotBacktestable
	for reason, n := range sk.Reasons {
		if reason != understudy.DropNotBacktestable && n != 0 {
			t.DropReasons[reason] = n
		}
	}
	t.Offered = t.Live + t.Backfill + t.SampledOut + t.Dropped + t.Pending
	t.Coverage, t.LiveCoverage = ratio(t.Live+t.Backfill, t.Offered), ratio(t.Live, t.Offered)
	t.MirrorRate, t.DropRate = t.Coverage, ratio(t.Dropped, t.Offered)
	t.ErrorRate, t.TimeoutRate = ratio(t.Errors, t.Mirrored), ratio(t.Timeouts, t.Mirrored)
	t.PrimaryErrorRate = ratio(prim.Errors, prim.Requests)
	return t, nil
}

// originPairs is the traffic's stored runs of origin o.
func originPairs(t *Traffic, o string) int64 {
	switch o {
	case understudy.OriginLive:
		return t.Live
	case understudy.OriginBackfill:
		return t.Backfill
	case understudy.OriginBacktest:
		return t.Backtest
	}
	return t.Live + t.Backfill + t.Backtest
}

// evidence fills the verdict's account of how much of its evidence is
// live: the pairs of the origin filter, and the live ones among them.
func evidence(v *Verdict, t *Traffic, origin, latencyOrigin string) {
	v.Pairs = t.Mirrored
	if origin == OriginAll || origin == understudy.OriginLive {
		v.LivePairs = t.Live
	}
	v.LiveShare = ratio(v.LivePairs, v.Pairs)
	var b strings.Builder
	switch {
	case v.Pairs == 0 && origin == OriginAll:
		b.WriteString("No pairs in the window")
	case v.Pairs == 0:
		fmt.Fprintf(&b, "No %s pairs in the window", origin)
	case origin == OriginAll:
		fmt.Fprintf(&b, "%.1f%% of the evidence is live: %d live, %d backfilled and %d backtested pairs", 100*v.LiveShare, t.Live, t.Backfill, t.Backtest)
	default:
		fmt.Fprintf(&b, "%.1f%% of the evidence is live: only the %d %s pairs are judged (origin filter)", 100*v.LiveShare, v.Pairs, origin)
	}
	if latencyOrigin == understudy.OriginLive {
		fmt.Fprintf(&b, "; latency and CPU are judged on the %d live pairs only.", t.Live)
	} else {
		fmt.Fprintf(&b, "; latency and CPU are judged on the %d %s pairs: offline CPU times per run on stored traffic.", originPairs(t, latencyOrigin), latencyOrigin)
	}
	v.Evidence = b.String()
}
