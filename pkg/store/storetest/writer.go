package storetest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/understudy-ml/understudy/pkg/store"
)

// Ensure retention deletes the rows older than Days or beyond the newest
// Rows, and skip counters older than Days, and nothing else, and says how
// many rows it deleted.
func testRetention(t *testing.T, open Opener) {
	now := time.Date(2030, 6, 10, 12, 0, 0, 0, time.UTC)
	d := 24 * time.Hour
	for _, tt := range []struct {
		name    string
		p       store.Retention
		ages    []time.Duration // one pair and one skip minute per age
		deleted int64
		kept    []int // indexes into ages
		skips   int64 // skip minutes left
	}{
		{"by days", store.Retention{Days: 3}, []time.Duration{10 * d, 5 * d, 2 * d, time.Hour, 0}, 2*2 + 2, []int{2, 3, 4}, 3},
		{"by rows", store.Retention{Rows: 2}, []time.Duration{3 * time.Hour, time.Hour, 10 * d, 2 * d, 0}, 3 * 2, []int{1, 4}, 5},
		{"by both", store.Retention{Days: 3, Rows: 2}, []time.Duration{10 * d, 0, time.Hour, 5 * d, 2 * d}, 3*2 + 2, []int{1, 2}, 3},
		{"keep all", store.Retention{}, []time.Duration{10 * d, 0}, 0, []int{0, 1}, 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			st := open(t)
			ctx := context.Background()
			for i, age := range tt.ages {
				p, s := pairOf(fmt.Sprint(i), now.Add(-age))
				s.Time = p.Time
				st.WritePrediction(p)
				st.WriteShadowResult(s)
				st.CountSkips(s.Shadow, s.Version, now.Add(-age), 1, 0)
				flush(t, st)
			}
			tt.p.Now = now
			deleted, err := st.ApplyRetention(ctx, tt.p)
			if err != nil {
				t.Fatalf("ApplyRetention: %v", err)
			}
			assertEqual(t, "deleted", deleted, tt.deleted)
			for i := range tt.ages {
				r := request(t, st, fmt.Sprint(i))
				kept := slices.Contains(tt.kept, i)
				assertEqual(t, fmt.Sprintf("prediction %d kept", i), r != nil && r.Prediction != nil, kept)
				assertEqual(t, fmt.Sprintf("shadow result %d kept", i), r != nil && len(r.Shadows) == 1, kept)
			}
			s := snapshot(t, st)
			sk, err := s.SkipCounts(ctx, "iris-v2", "ba9876543210", time.Time{}, time.Time{})
			so := sk.SampledOut
			if err != nil {
				t.Fatal(err)
			}
			assertEqual(t, "skip minutes left", so, tt.skips)
			// The rest of what was deleted is skip minutes.
			stats := st.Stats()
			rows := tt.deleted - (int64(len(tt.ages)) - tt.skips)
			assertEqual(t, "rows deleted in the stats", stats.Predictions.Deleted+stats.ShadowResults.Deleted, rows)
		})
	}
}

// Ensure retention trims the rollups in whole days: the day holding the
// cutoff stays whole in every span, so that minutes, hours and days still
// add up to the same counts, and the days before it go.
func testRetentionRollups(t *testing.T, open Opener) {
	now := time.Date(2030, 5, 10, 12, 30, 0, 0, time.UTC)
	st := open(t)
	ctx := context.Background()
	// The cutoff of two days is 2030-05-08 12:30, inside the day of −49 h.
	for i, at := range []time.Time{now.Add(-72 * time.Hour), now.Add(-49 * time.Hour), now.Add(-time.Hour)} {
		p, s := pairOf(fmt.Sprint(i), at)
		s.Time = at
		st.WritePrediction(p)
		st.WriteShadowResult(s)
	}
	flush(t, st)
	if _, err := st.ApplyRetention(ctx, store.Retention{Days: 2, Now: now}); err != nil {
		t.Fatal(err)
	}
	assertEqual(t, "row of −49 h deleted", request(t, st, "1") == nil, true)
	s := snapshot(t, st)
	// Each step reads other spans: minutes only, minutes and hours, all.
	for _, step := range []time.Duration{0, time.Minute, time.Hour, 24 * time.Hour} {
		sums, err := s.ShadowSummaries(ctx, store.RollupFilter{Step: step})
		if err != nil {
			t.Fatal(err)
		}
		if len(sums) != 1 {
			t.Fatalf("step %v: %d summaries, want 1", step, len(sums))
		}
		assertEqual(t, fmt.Sprintf("step %v: pairs in the rollups", step), sums[0].Total.Pairs, 2)
	}
	cells, err := s.Confusion(ctx, "iris-v2", "ba9876543210", time.Time{}, now)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, c := range cells {
		n += c.N
	}
	assertEqual(t, "rows in the confusion rollups", n, 2)
	for _, w := range []struct{ from, to time.Time }{{}, {now.Add(-60 * time.Hour), now.Add(time.Hour)}, {now.Add(-49*time.Hour - time.Minute), now.Add(-48 * time.Hour)}} {
		prims, err := s.PrimaryCounts(ctx, w.from, w.to)
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		for _, p := range prims {
			n += p.Requests
		}
		want := int64(2)
		if !w.to.IsZero() && w.to.Before(now.Add(-time.Hour)) {
			want = 1
		}
		assertEqual(t, fmt.Sprintf("requests in [%v, %v)", w.from, w.to), n, want)
	}
}

// Ensure writers on many goroutines lose nothing: every row is committed
// exactly once and counted once, in the stats and in the rollups.
func testConcurrentWriters(t *testing.T, open Opener) {
	st := open(t)
	const writers, each = 8, 300
	at := time.Date(2030, 6, 1, 8, 0, 0, 0, time.UTC)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				holdBack(st)
				p, s := pairOf(fmt.Sprintf("w%d-%d", w, i), at.Add(time.Duration(i)*time.Second))
				st.WritePrediction(p)
				st.WriteShadowResult(s)
				st.CountSkips(s.Shadow, s.Version, p.Time, 1, 2)
				if i%100 == 99 {
					if err := st.Flush(context.Background()); err != nil {
						t.Error(err)
					}
				}
			}
		})
	}
	wg.Wait()
	flush(t, st)
	const n = writers * each
	stats := st.Stats()
	assertEqual(t, "predictions", stats.Predictions, store.TableStats{Written: n})
	assertEqual(t, "shadow results", stats.ShadowResults, store.TableStats{Written: n})
	assertEqual(t, "skips", stats.Skips.Written, n)
	ctx := context.Background()
	s := snapshot(t, st)
	prims, err := s.PrimaryCounts(ctx, time.Time{}, time.Time{})
	if err != nil || len(prims) != 1 || prims[0].Requests != n {
		t.Errorf("primary counts %+v, %v; want %d requests", prims, err, n)
	}
	sums, err := s.ShadowSummaries(ctx, store.RollupFilter{Step: time.Minute})
	if err != nil || len(sums) != 1 || sums[0].Total.Pairs != n || sums[0].Total.Latency.Total != n {
		t.Fatalf("summaries %v, %v; want one of %d pairs", len(sums), err, n)
	}
	sk, err := s.SkipCounts(ctx, "iris-v2", "ba9876543210", time.Time{}, time.Time{})
	so, dropped := sk.SampledOut, sk.Dropped
	if err != nil || so != n || dropped != 2*n {
		t.Errorf("skips %d, %d, %v; want %d, %d", so, dropped, err, n, 2*n)
	}
}

// Ensure Flush returns once every row handed over before it is readable.
func testFlush(t *testing.T, open Opener) {
	st := open(t)
	ctx := context.Background()
	at := time.Date(2030, 6, 1, 8, 0, 0, 0, time.UTC)
	for round, n := range []int{1, 7, 250} {
		for i := range n {
			p, s := pairOf(fmt.Sprintf("r%d-%d", round, i), at)
			st.WritePrediction(p)
			st.WriteShadowResult(s)
		}
		flush(t, st)
		s := snapshot(t, st)
		sums, err := s.ShadowSummaries(ctx, store.RollupFilter{})
		if err != nil {
			t.Fatal(err)
		}
		written := int64([]int{1, 8, 258}[round])
		if len(sums) != 1 || sums[0].Total.Pairs != written {
			t.Errorf("round %d: summaries %+v; want %d pairs readable after Flush", round, sums, written)
		}
		assertEqual(t, "written", st.Stats().ShadowResults.Written, written)
		assertEqual(t, "last pair readable", len(pairs(t, st, store.PairFilter{Limit: 1000})), int(written))
	}
	if err := st.Flush(ctx); err != nil {
		t.Errorf("Flush with nothing queued: %v", err)
	}
}

// Ensure a snapshot keeps reading the state of its first read while rows
// are committed after it, and a new snapshot sees them.
func testSnapshotIsolation(t *testing.T, open Opener) {
	st := open(t)
	ctx := context.Background()
	at := time.Date(2030, 6, 1, 8, 0, 0, 0, time.UTC)
	write := func(prefix string, n int) {
		for i := range n {
			p, s := pairOf(fmt.Sprint(prefix, i), at)
			st.WritePrediction(p)
			st.WriteShadowResult(s)
		}
		flush(t, st)
	}
	count := func(s store.Snapshot) (requests int64, pairs int) {
		t.Helper()
		prims, err := s.PrimaryCounts(ctx, time.Time{}, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range prims {
			requests += p.Requests
		}
		ps, err := s.Pairs(ctx, store.PairFilter{Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		return requests, len(ps)
	}
	write("a", 5)
	old := snapshot(t, st)
	if r, p := count(old); r != 5 || p != 5 {
		t.Fatalf("before: %d requests, %d pairs; want 5", r, p)
	}
	write("b", 3)
	if r, p := count(old); r != 5 || p != 5 {
		t.Errorf("the old snapshot after more commits: %d requests, %d pairs; want 5", r, p)
	}
	if r, p := count(snapshot(t, st)); r != 8 || p != 8 {
		t.Errorf("a new snapshot: %d requests, %d pairs; want 8", r, p)
	}
	if err := old.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

// Ensure Close commits every row handed over before it, is safe to call
// twice, and counts rows handed over after it as lost; Flush after Close
// returns at once.
func testClose(t *testing.T, open Opener) {
	st := open(t)
	at := time.Date(2030, 6, 1, 8, 0, 0, 0, time.UTC)
	const n = 500
	for i := range n {
		holdBack(st)
		p, s := pairOf(fmt.Sprint(i), at)
		st.WritePrediction(p)
		st.WriteShadowResult(s)
	}
	if err := st.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := st.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	p, s := pairOf("late", at)
	st.WritePrediction(p)
	st.WriteShadowResult(s)
	st.CountSkips(s.Shadow, s.Version, at, 1, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := st.Flush(ctx); err != nil {
		t.Errorf("Flush after Close: %v", err)
	}
	stats := st.Stats()
	assertEqual(t, "predictions", stats.Predictions, store.TableStats{Written: n, Lost: 1})
	assertEqual(t, "shadow results", stats.ShadowResults, store.TableStats{Written: n, Lost: 1})
	assertEqual(t, "skips lost", stats.Skips.Lost, 1)
}
