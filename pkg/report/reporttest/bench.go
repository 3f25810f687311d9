package reporttest

import (
	"context"
	"testing"
	"time"

	"github.com/understudy-ml/understudy/pkg/report"
	"github.com/understudy-ml/understudy/pkg/store/storetest"
)

// Benchmark fills 1,000,000 pairs spread over a week through the writer of
// a store open returns (about 30 s on two cores with SQLite; skipped with
// -short) and measures Build for the window "all", which must stay under a
// second. A backend runs it from a benchmark of its own, e.g.
//
//	go test -run NONE -bench BuildMillion ./pkg/sqlite/
func Benchmark(b *testing.B, open storetest.Opener) {
	if testing.Short() {
		b.Skip("fills a million pairs")
	}
	db := open(b)
	ctx := context.Background()
	start := time.Now()
	if err := report.Fill(ctx, db, 1_000_000, now.Add(-7*24*time.Hour), now, 0.02); err != nil {
		b.Fatalf("Fill: %v", err)
	}
	fill := time.Since(start)
	var ms float64
	for b.Loop() {
		r, err := report.Build(ctx, db, report.Query{Window: "all", Tolerance: report.DefaultTolerance}, report.DefaultThresholds, now)
		if err != nil {
			b.Fatalf("Build: %v", err)
		}
		ms = max(ms, r.ElapsedMS)
	}
	// Reported after the loop: b.Loop resets the metrics when it starts.
	b.ReportMetric(fill.Seconds(), "fill-s")
	b.ReportMetric(ms, "max-build-ms")
}
