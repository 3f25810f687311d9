package report

import (
	"context"
	"math"
	"slices"
	"time"

	"github.com/understudy-ml/understudy/pkg/stats"
	"github.com/understudy-ml/understudy/pkg/store"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// This file is the builder: Build reads the store through one snapshot,
// and for each shadow the builder gathers its counts and hands them to the
// section computations (sections.go, charts.go) and to the verdict
// (verdict.go).

// How the report reads the store.
const (
	// ExactMaxPairs is the most pairs a shadow may have in the window for
	// its latency percentiles and within-tolerance share to be computed
	// from the raw rows; above it they come from the rollups' histograms
	// (Latency.Exact and Regression.Exact say which).
	ExactMaxPairs = 200_000
	// KSSamples is how many of the newest pairs the KS test compares.
	KSSamples = 5000
	// MinLabelled is the least number of labelled pairs before the
	// accuracy check can fail.
	MinLabelled = 10
	// PSIEpsilon replaces a class share of zero in the PSI.
	PSIEpsilon = 1e-4
	// MaxChartPoints bounds the points of a time series; the step is the
	// smallest of chartSteps that keeps to it.
	MaxChartPoints = 120
	// Listed is how many pairs each Disagreements list holds.
	Listed = 20
	// EventsListed is how many lifecycle events the report lists.
	EventsListed = 50
)

// Build computes the report for q over the window ending at now, judged
// by th (all zero: DefaultThresholds).
//
// The window is whole minutes, because the rollups are: From is now − window
// rounded down to the minute and To the end of now's minute. Counts, rates,
// agreement, κ, the confusion matrix, PSI, MAE, RMSE, max|Δ|, CPU and the
// charts come from the rollups the writer maintains, read as whole days,
// hours and minutes, so their cost does not grow with the pairs. Latency
// percentiles and the within-tolerance share come from the raw rows when
// the window holds at most ExactMaxPairs pairs of the shadow, else from the
// rollups' histograms; KS reads the newest KSSamples pairs, accuracy the
// labelled requests of the window, and the disagreement lists a few
// minutes of rows found through the rollups. All reads but the models and
// events share one store.Snapshot. Rows a backend stored before it kept
// rollups (SQLite's migration 00003) are not counted.
//
// The comparison reads the pairs of q.Origin, latency and CPU those of
// q.LatencyOrigin (live), and the traffic section every origin: see
// origin.go for why.
func Build(ctx context.Context, db store.Reader, q Query, th Thresholds, now time.Time) (*Report, error) {
	start := time.Now()
	if q.Window == "" {
		q.Window = "1h"
	}
	dur, ok := Windows[q.Window]
	if !ok {
		return nil, understudy.Errorf(understudy.EINVALID, "window %q: want one of %v", q.Window, WindowNames)
	}
	if !(q.Tolerance >= 0) || math.IsInf(q.Tolerance, 0) {
		return nil, understudy.Errorf(understudy.EINVALID, "tolerance %v: want a number ≥ 0", q.Tolerance)
	}
	if err := checkOrigins(&q); err != nil {
		return nil, err
	}
	if th == (Thresholds{}) {
		th = DefaultThresholds
	}
	r := &Report{GeneratedAt: now, Query: q, Thresholds: th, To: now.Truncate(time.Minute).Add(time.Minute)}
	if dur > 0 {
		r.From = now.Add(-dur).Truncate(time.Minute)
	}

	snap, err := db.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	defer snap.Close()

	r.Primary = q.Primary
	if r.Primary == (understudy.ModelRef{}) {
		if r.Primary, _, err = snap.LatestPrediction(ctx); err != nil {
			return nil, err
		}
	}
	primaries, err := snap.PrimaryCounts(ctx, r.From, r.To)
	if err != nil {
		return nil, err
	}
	for _, p := range primaries {
		r.Requests += p.Requests
		r.PrimaryErrors += p.Errors
	}
	// The charts' step follows the span; "all" spans from the first
	// minute with data.
	span := r.From
	if span.IsZero() {
		if span, _, err = snap.ShadowSpan(ctx, q.Shadow, q.Version); err != nil {
			return nil, err
		}
	}
	shadows, err := readShadows(ctx, snap, store.RollupFilter{Shadow: q.Shadow, Version: q.Version, From: r.From, To: r.To, Step: chartStep(span, r.To)}, q)
	if err != nil {
		return nil, err
	}
	models, err := db.Models(ctx)
	if err != nil {
		return nil, err
	}
	b := &builder{snap: snap, r: r, q: q, th: th, primaries: primaries, models: map[understudy.ModelRef]store.ModelRecord{}}
	for _, m := range models {
		b.models[understudy.ModelRef{Name: m.Name, Version: m.Version}] = m
	}
	r.Shadows = make([]ShadowReport, 0, len(shadows))
	for _, d := range shadows {
		sr, err := b.shadow(ctx, d)
		if err != nil {
			return nil, err
		}
		r.Shadows = append(r.Shadows, *sr)
	}
	if err := b.canaries(ctx, db); err != nil {
		return nil, err
	}
	replicas, err := snap.Replicas(ctx, r.From, r.To)
	if err != nil {
		return nil, err
	}
	for _, rc := range replicas {
		rr := ReplicaReport{Replica: rc.Replica, Requests: rc.Requests, Errors: rc.Errors, Pairs: rc.Pairs, First: rc.First, Last: rc.Last}
		if r.Requests > 0 {
			rr.Share = float64(rc.Requests) / float64(r.Requests)
		}
		r.Replicas = append(r.Replicas, rr)
	}
	if r.Versions, err = snap.ShadowVersions(ctx); err != nil {
		return nil, err
	}
	if r.Events, err = db.Events(ctx, store.EventFilter{Limit: EventsListed}); err != nil {
		return nil, err
	}
	r.ElapsedMS = float64(time.Since(start).Microseconds()) / 1000
	return r, nil
}

type builder struct {
	snap      store.Snapshot
	r         *Report
	q         Query
	th        Thresholds
	primaries []store.PrimaryCounts
	models    map[understudy.ModelRef]store.ModelRecord
}

func (b *builder) shadow(ctx context.Context, d *shadowData) (*ShadowReport, error) {
	r, q, tot, name, version := b.r, b.q, &d.filtered.Total, d.ref.Name, d.ref.Version
	sr := &ShadowReport{Name: name, Version: version, PrimaryVersions: d.primaries}
	if sr.PrimaryVersions == nil {
		sr.PrimaryVersions = []understudy.ModelRef{}
	}
	// Every read of shadow rows goes through the filter's view, but those
	// of latency and CPU, through the latency origin's (see origin.go).
	fsnap, lsnap := b.snap.Origin(storeOrigin(q.Origin)), b.snap.Origin(q.LatencyOrigin)

	// The primary's side is the versions this shadow was compared with;
	// its resources are those of the serving one, or else of the one that
	// answered most requests.
	var prim store.PrimaryCounts
	var main understudy.ModelRef
	var mainRequests int64 = -1
	for _, p := range b.primaries {
		ref := understudy.ModelRef{Name: p.Model, Version: p.Version}
		if !slices.Contains(d.primaries, ref) {
			continue
		}
		prim.Requests += p.Requests
		prim.Errors += p.Errors
		prim.CPUUS += p.CPUUS
		prim.CPURuns += p.CPURuns
		if p.Requests > mainRequests {
			main, mainRequests = ref, p.Requests
		}
	}
	if slices.Contains(d.primaries, r.Primary) {
		main = r.Primary
	}

	var err error
	if sr.Traffic, err = b.traffic(ctx, d, prim); err != nil {
		return nil, err
	}

	classOut, floatOut, err := fsnap.OutputNames(ctx, name, version, r.From, r.To)
	if err != nil {
		return nil, err
	}
	var cells []store.ConfusionCell
	if tot.ClassRows > 0 {
		if cells, err = fsnap.Confusion(ctx, name, version, r.From, r.To); err != nil {
			return nil, err
		}
		sr.Classification = classification(classOut, tot, cells)
	}

	exactMax := int64(ExactMaxPairs)
	if q.ExactMaxPairs > 0 {
		exactMax = q.ExactMaxPairs
	}
	var samples, latSamples *store.PairSamples
	if tot.Pairs <= exactMax {
		if samples, err = fsnap.PairSamples(ctx, name, version, r.From, r.To); err != nil {
			return nil, err
		}
	}
	latTot := &d.latency.Total
	// The two views hold the same rows when the filter is the latency's
	// origin, or all with no pairs of another origin.
	if storeOrigin(q.Origin) == q.LatencyOrigin || q.Origin == OriginAll && latTot.Pairs == tot.Pairs {
		latSamples = samples
	} else if latTot.Pairs <= exactMax {
		if latSamples, err = lsnap.PairSamples(ctx, name, version, r.From, r.To); err != nil {
			return nil, err
		}
	}
	if tot.FloatPairs > 0 {
		sr.Regression = regression(floatOut, tot, samples, q.Tolerance)
	}
	sr.Latency = latency(latTot, latSamples)
	sr.Latency.Origin = q.LatencyOrigin

	acc, err := fsnap.Accuracy(ctx, name, version, r.From, r.To)
	if err != nil {
		return nil, err
	}
	sr.Accuracy = accuracy(acc)

	sr.Drift.PSI = psi(cells)
	ps, ss, err := fsnap.Scores(ctx, name, version, r.From, r.To, KSSamples)
	if err != nil {
		return nil, err
	}
	if len(ps) > 0 {
		d, p := stats.KS2(ps, ss)
		if !math.IsNaN(d) {
			sr.Drift.KSD, sr.Drift.KSP, sr.Drift.KSSamples = &d, &p, len(ps)
		}
	}

	res := &sr.Resources
	shadowModel, primaryModel := b.models[d.ref], b.models[main]
	res.ShadowFileSize, res.ShadowMemory = shadowModel.Size, shadowModel.MemoryBytes
	res.PrimaryFileSize, res.PrimaryMemory = primaryModel.Size, primaryModel.MemoryBytes
	res.ShadowCPUUS = ratio(latTot.CPUUS, latTot.CPURuns)
	res.PrimaryCPUUS = ratio(prim.CPUUS, prim.CPURuns)

	sr.Charts = charts(d.filtered, d.latency, q.Tolerance)

	latest, err := fsnap.Pairs(ctx, store.PairFilter{Shadow: name, Version: version, Since: r.From, Until: r.To,
		DisagreeOnly: true, Tolerance: q.Tolerance, Order: store.ByTime, Limit: Listed})
	if err != nil {
		return nil, err
	}
	largest, err := fsnap.Pairs(ctx, store.PairFilter{Shadow: name, Version: version, Since: r.From, Until: r.To,
		Order: store.ByDiff, Limit: Listed})
	if err != nil {
		return nil, err
	}
	sr.Disagreements = Disagreements{Latest: pairs(latest), Largest: pairs(largest)}

	sr.Verdict = verdict(sr, b.th)
	evidence(&sr.Verdict, &sr.Traffic, q.Origin, q.LatencyOrigin)
	return sr, nil
}

// ratio is a/b, or 0 when b is 0.
func ratio[T int64 | float64](a, b T) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// finite keeps a value JSON can carry: an infinite difference (one model
// answered ±Inf where the other did not) shows as the largest float64.
func finite(x float64) float64 {
	switch {
	case math.IsInf(x, 1):
		return math.MaxFloat64
	case math.IsInf(x, -1):
		return -math.MaxFloat64
	case math.IsNaN(x):
		return 0
	}
	return x
}
