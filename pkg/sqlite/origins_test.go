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
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// Ensure migration 00007 keeps what was stored before it: the rows and the
// rollups as live ones and the dropped jobs as shed; that going down keeps
// the live rollups; and that the store writes on after going up again.
func TestOriginsMigration(t *testing.T) {
	db, _ := openDB(t, sqlite.Options{})
	ctx := context.Background()
	at := time.Date(2030, 6, 1, 10, 0, 0, 0, time.UTC)
	writePairs(db, "x", 5, at)
	db.CountSkips("iris-v2", "ba9876543210", at, 2, 3)
	flush(t, db)
	w := db.WritePool()
	prov, err := goose.NewProvider(goose.DialectSQLite3, w, migrations.FS, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := prov.DownTo(ctx, 6); err != nil {
		t.Fatalf("down: %v", err)
	}
	for _, table := range []string{"shadow_results", "shadow_rollups", "confusion_rollups"} {
		assertEqual(t, table+" columns named origin after down",
			queryInt(t, w, `SELECT count(*) FROM pragma_table_info(?) WHERE name = 'origin'`, table), 0)
	}
	assertEqual(t, "live pairs in the minute rollups after down", queryInt(t, w, `SELECT sum(pairs) FROM shadow_rollups WHERE span = 1`), 5)
	// Dropped before the backlog existed.
	if _, err := w.ExecContext(ctx, `UPDATE shadow_skips SET dropped = dropped + 4`); err != nil {
		t.Fatal(err)
	}
	if _, err := prov.Up(ctx); err != nil {
		t.Fatalf("up: %v", err)
	}

	writePairs(db, "y", 2, at)
	flush(t, db)
	snap, err := db.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	for _, tt := range []struct {
		origin string
		pairs  int64
	}{{"", 7}, {understudy.OriginLive, 7}, {understudy.OriginBackfill, 0}} {
		sums, err := snap.Origin(tt.origin).ShadowSummaries(ctx, store.RollupFilter{Step: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		var pairs int64
		for _, s := range sums {
			pairs += s.Total.Pairs
		}
		assertEqual(t, fmt.Sprintf("pairs of origin %q", tt.origin), pairs, tt.pairs)
	}
	sk, err := snap.SkipCounts(ctx, "iris-v2", "ba9876543210", time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	assertEqual(t, "skips", fmt.Sprint(sk), fmt.Sprint(store.Skips{SampledOut: 2, Dropped: 7, Reasons: map[string]int64{understudy.DropShed: 7}}))
	r, err := snap.Request(ctx, "x0")
	if err != nil || len(r.Shadows) != 1 {
		t.Fatalf("Request(x0): %+v, %v", r, err)
	}
	assertEqual(t, "origin of a row stored before", r.Shadows[0].Origin, understudy.OriginLive)
}
