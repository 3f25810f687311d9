package sqlite_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/understudy-ml/understudy/pkg/sqlite"
)

// Ensure retention deletes more rows than one chunk holds, and that the
// background goroutine applies it on its own.
func TestRetentionChunksInBackground(t *testing.T) {
	now := time.Unix(1_750_000_000, 0)
	db, _ := openDB(t, sqlite.Options{RetainDays: 1, RetentionInterval: 20 * time.Millisecond, Now: func() time.Time { return now }})
	const old, fresh = 4500, 10
	for i := range old + fresh {
		at := now.Add(-48 * time.Hour)
		if i >= old {
			at = now
		}
		p, s := sqlite.SamplePair(fmt.Sprint(i), at)
		db.WritePrediction(p)
		db.WriteShadowResult(s)
	}
	flush(t, db)
	// The deleted counters are bumped just after each chunk commits, so
	// they may trail the row counts for a moment.
	deadline := time.Now().Add(10 * time.Second)
	for {
		p, s := counts(t, db)
		st := db.Stats()
		if p == fresh && s == fresh && st.Predictions.Deleted == old && st.ShadowResults.Deleted == old {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("counts = %d, %d and deleted = %d, %d after 10 s; want %d, %d and %d", p, s, st.Predictions.Deleted, st.ShadowResults.Deleted, fresh, fresh, old)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
