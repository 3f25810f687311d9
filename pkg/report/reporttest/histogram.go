package reporttest

import (
	"context"
	"testing"
	"time"

	"github.com/understudy-ml/understudy/pkg/report"
	"github.com/understudy-ml/understudy/pkg/store"
	"github.com/understudy-ml/understudy/pkg/store/storetest"
)

// Ensure that above ExactMaxPairs the report reads percentiles and the
// within-tolerance share from the rollups' histograms within their
// documented error (0.5% for latencies; for |Δ| only the pairs in the
// tolerance's bucket), and that everything else is the same as from the
// raw rows.
func testBuildHistogramPath(t *testing.T, open storetest.Opener) {
	db := open(t)
	ctx := context.Background()
	if err := report.Fill(ctx, db, 20000, now.Add(-20*time.Hour), now, 0.02); err != nil {
		t.Fatalf("Fill: %v", err)
	}
	const tol = 3e-3 // inside a bucket, not on an edge
	q := report.Query{Window: "24h", Tolerance: tol}
	exact, err := report.Build(ctx, db, q, report.DefaultThresholds, now)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	q.ExactMaxPairs = 1
	hist, err := report.Build(ctx, db, q, report.DefaultThresholds, now)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	e, h := exact.Shadows[0], hist.Shadows[0]
	assertEqual(t, "exact Latency.Exact", e.Latency.Exact, true)
	assertEqual(t, "Latency.Exact", h.Latency.Exact, false)
	assertEqual(t, "Regression.Exact", h.Regression.Exact, false)
	assertEqual(t, "Latency.N", h.Latency.N, e.Latency.N)
	for _, c := range []struct {
		name      string
		got, want float64
	}{
		{"PrimaryP50", h.Latency.PrimaryP50, e.Latency.PrimaryP50},
		{"PrimaryP95", h.Latency.PrimaryP95, e.Latency.PrimaryP95},
		{"PrimaryP99", h.Latency.PrimaryP99, e.Latency.PrimaryP99},
		{"ShadowP50", h.Latency.ShadowP50, e.Latency.ShadowP50},
		{"ShadowP95", h.Latency.ShadowP95, e.Latency.ShadowP95},
		{"ShadowP99", h.Latency.ShadowP99, e.Latency.ShadowP99},
	} {
		assertClose(t, c.name, c.got, c.want, 0.005)
	}
	// A ratio of two values each within 0.5%.
	assertClose(t, "RatioP99", h.Latency.RatioP99, e.Latency.RatioP99, 0.0101)

	// Only the pairs whose max|Δ| shares the tolerance's bucket can be
	// misjudged.
	snap, err := db.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	all, err := snap.Pairs(ctx, store.PairFilter{Order: store.ByDiff, Limit: 100000})
	if err != nil {
		t.Fatalf("Pairs: %v", err)
	}
	k := store.DiffBuckets.Index(tol)
	var inBucket int
	for _, p := range all {
		if store.DiffBuckets.Index(*p.MaxAbsDiff) == k {
			inBucket++
		}
	}
	if inBucket == 0 {
		t.Fatal("no pair in the tolerance's bucket: the test checks nothing")
	}
	pairs := float64(e.Regression.Pairs)
	if d := h.Regression.WithinTol - e.Regression.WithinTol; d*pairs > float64(inBucket) || -d*pairs > float64(inBucket) {
		t.Errorf("WithinTol = %v, exact %v: off by %.1f pairs, more than the %d in the bucket", h.Regression.WithinTol, e.Regression.WithinTol, d*pairs, inBucket)
	}

	// The rest does not depend on the path.
	assertEqual(t, "MAE", h.Regression.MAE, e.Regression.MAE)
	assertEqual(t, "RMSE", h.Regression.RMSE, e.Regression.RMSE)
	assertEqual(t, "Agreement", h.Classification.Agreement, e.Classification.Agreement)
	assertEqual(t, "Kappa", h.Classification.Kappa, e.Classification.Kappa)
	assertEqual(t, "PSI", *h.Drift.PSI, *e.Drift.PSI)
	assertEqual(t, "KSD", *h.Drift.KSD, *e.Drift.KSD)
	assertEqual(t, "Labelled", h.Accuracy.Labelled, e.Accuracy.Labelled)
}
