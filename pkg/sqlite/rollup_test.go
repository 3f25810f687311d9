package sqlite_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/pressly/goose/v3"

	"github.com/understudy-ml/understudy/migrations"
	"github.com/understudy-ml/understudy/pkg/sqlite"
	"github.com/understudy-ml/understudy/pkg/store"
)

func assertEqual[T comparable](tb testing.TB, name string, got, want T) {
	tb.Helper()
	if got != want {
		tb.Errorf("%s = %v, want %v", name, got, want)
	}
}

// Ensure retention removes the rollups of the spans that ended before what
// it keeps and leaves those that straddle it whole.
func TestRetentionTrimsRollups(t *testing.T) {
	now := time.Date(2030, 5, 10, 12, 30, 0, 0, time.UTC)
	db, _ := openDB(t, sqlite.Options{RetainDays: 2, Now: func() time.Time { return now }})
	ctx := context.Background()
	for i, at := range []time.Time{now.Add(-72 * time.Hour), now.Add(-49 * time.Hour), now.Add(-time.Hour)} {
		p, s := sqlite.SamplePair(fmt.Sprint(i), at)
		s.Time = at
		db.WritePrediction(p)
		db.WriteShadowResult(s)
	}
	if err := db.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ApplyRetention(ctx, store.Retention{Days: 2, Now: now}); err != nil {
		t.Fatal(err)
	}
	// The cutoff is 2030-05-08 12:30, inside the day of −49 h: that day
	// stays whole in every span, so that the minute, hour and day rollups
	// still add up to the same counts; the day of −72 h goes.
	w := db.WritePool()
	for _, tt := range []struct {
		span int
		want int64
	}{{1, 2}, {60, 2}, {1440, 2}} {
		assertEqual(t, fmt.Sprintf("shadow rollups of span %d", tt.span),
			queryInt(t, w, `SELECT count(*) FROM shadow_rollups WHERE span = ?`, tt.span), tt.want)
		assertEqual(t, fmt.Sprintf("primary rollups of span %d", tt.span),
			queryInt(t, w, `SELECT count(*) FROM primary_rollups WHERE span = ?`, tt.span), tt.want)
		assertEqual(t, fmt.Sprintf("confusion rollups of span %d", tt.span),
			queryInt(t, w, `SELECT count(*) FROM confusion_rollups WHERE span = ?`, tt.span), tt.want)
	}
	// Readers pick the span by window; every span must tell the same story.
	for _, q := range []string{
		`SELECT coalesce(sum(pairs), 0) FROM shadow_rollups WHERE span = ?`,
		`SELECT coalesce(sum(n), 0) FROM confusion_rollups WHERE span = ?`,
		`SELECT coalesce(sum(requests), 0) FROM primary_rollups WHERE span = ?`,
	} {
		day := queryInt(t, w, q, 1440)
		for _, span := range []int{1, 60} {
			assertEqual(t, fmt.Sprintf("%s, span %d against days", q, span), queryInt(t, w, q, span), day)
		}
	}
}

// Ensure the report migration can be rolled back and applied again.
func TestReportMigrationDown(t *testing.T) {
	db, _ := openDB(t, sqlite.Options{})
	p, s := sqlite.SamplePair("x", time.Now())
	db.WritePrediction(p)
	db.WriteShadowResult(s)
	ctx := context.Background()
	if err := db.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	prov, err := goose.NewProvider(goose.DialectSQLite3, db.WritePool(), migrations.FS, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := prov.DownTo(ctx, 2); err != nil {
		t.Fatalf("down: %v", err)
	}
	assertEqual(t, "rollup tables after down", queryInt(t, db.WritePool(), `SELECT count(*) FROM sqlite_master WHERE name LIKE '%rollups'`), 0)
	if _, err := prov.Up(ctx); err != nil {
		t.Fatalf("up: %v", err)
	}
	assertEqual(t, "rows kept", queryInt(t, db.WritePool(), `SELECT count(*) FROM shadow_results`), 1)
}
