package postgres_test

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/understudy-ml/understudy/internal/pgtest"
	"github.com/understudy-ml/understudy/pkg/postgres"
	"github.com/understudy-ml/understudy/pkg/store"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// pair returns an ok prediction of iris and its iris-v2 result of origin.
func pair(id string, at time.Time, origin string) (*understudy.Prediction, *understudy.ShadowResult) {
	class, agreement, diff := int64(1), 1.0, 0.5
	p := &understudy.Prediction{ID: id, Time: at, Model: "iris", Version: "0123456789ab", Status: understudy.StatusOK,
		Latency: 87 * time.Microsecond,
		Inputs:  map[string]*understudy.Tensor{"input": {DType: understudy.Float32, Shape: []int64{1, 2}, Data: []float32{5.1, 3.5}}},
		Outputs: map[string]*understudy.Tensor{"label": {DType: understudy.Int64, Shape: []int64{1}, Data: []int64{class}}},
	}
	s := &understudy.ShadowResult{RequestID: id, Time: at, Shadow: "iris-v2", Version: "ba9876543210", Origin: origin,
		Primary: "iris", PrimaryVersion: "0123456789ab", Status: understudy.StatusOK, Latency: 95 * time.Microsecond,
		Outputs: p.Outputs,
		Compare: understudy.Comparison{Agreement: &agreement, PrimaryClass: &class, ShadowClass: &class, MaxAbsDiff: &diff, MeanAbsDiff: &diff}}
	return p, s
}

func snap(t *testing.T, db *postgres.DB) store.Snapshot {
	t.Helper()
	s, err := db.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func check(t *testing.T, what string, got, want any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s = %+v, want %+v", what, got, want)
	}
}

// Beyond the shared suite (storetest): ensure the backlog's rows are
// counted in Stats' Skips, a job deferred and run in one batch leaves no
// row behind, and retention drops the jobs of the requests it deletes.
func TestBacklog(t *testing.T) {
	db := open(t, pgtest.URL(t), postgres.Options{})
	ctx := context.Background()
	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	job := func(id string, d time.Duration) understudy.DeferredJob {
		return understudy.DeferredJob{RequestID: id, Shadow: "iris-v2", Version: "ba9876543210", Time: at.Add(d)}
	}
	jobs := []understudy.DeferredJob{job("c", 0), job("a", time.Second), job("b", time.Second), job("d", time.Hour)}
	for _, j := range jobs {
		db.Defer(j)
	}
	db.Defer(jobs[0]) // already pending
	flush(t, db)
	db.Defer(jobs[1]) // already pending, in a later batch
	db.CountSkips("iris-v2", "ba9876543210", at, 2, 3)
	db.CountDrops("iris-v2", "ba9876543210", at, understudy.DropBacklogFull, 4)
	flush(t, db)
	got, err := db.Deferred(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, j := range got {
		ids = append(ids, j.RequestID)
		if j.Shadow != "iris-v2" || j.Version != "ba9876543210" {
			t.Errorf("job %+v", j)
		}
	}
	check(t, "deferred jobs", ids, []string{"c", "a", "b", "d"})
	check(t, "time of the first job", got[0].Time.UTC(), at)
	if top, _ := db.Deferred(ctx, 2); len(top) != 2 || top[1].RequestID != "a" {
		t.Errorf("Deferred(2) = %+v", top)
	}
	n, err := db.PendingJobs(ctx)
	check(t, "pending jobs", [2]any{n, err}, [2]any{int64(4), nil})
	st := db.Stats().Skips
	check(t, "skip stats", [2]int64{st.Written, st.Duplicate}, [2]int64{4 + 2, 2})

	// A backfill result removes its job, even when it is a duplicate.
	p, s := pair("a", at.Add(time.Second), understudy.OriginBackfill)
	db.WritePrediction(p)
	db.WriteShadowResult(s)
	flush(t, db)
	db.Defer(job("b", time.Second)) // still pending: not counted again
	_, s = pair("b", at.Add(time.Second), understudy.OriginBackfill)
	db.WriteShadowResult(s)
	flush(t, db)
	db.Defer(job("b", time.Second)) // deferred anew, then run again in the same batch
	db.WriteShadowResult(s)
	flush(t, db)
	if err := db.DropDeferred(ctx, []understudy.DeferredJob{job("c", 0), job("a", 0), job("zz", 0)}, understudy.DropExpired); err != nil {
		t.Fatal(err)
	}
	got, _ = db.Deferred(ctx, 10)
	if len(got) != 1 || got[0].RequestID != "d" {
		t.Errorf("jobs left %+v, want d", got)
	}

	sn := snap(t, db)
	sk, err := sn.SkipCounts(ctx, "iris-v2", "ba9876543210", at, at.Add(2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	check(t, "skips", sk, store.Skips{SampledOut: 2, Deferred: 5, Dropped: 3 + 4 + 1,
		Reasons: map[string]int64{understudy.DropShed: 3, understudy.DropBacklogFull: 4, understudy.DropExpired: 1}})
	pending, err := sn.Pending(ctx, "iris-v2", "ba9876543210", at, at.Add(time.Hour+time.Microsecond))
	check(t, "pending in the window", [2]any{pending, err}, [2]any{int64(1), nil})
	pending, _ = sn.Pending(ctx, "iris-v2", "ba9876543210", at, at.Add(time.Hour))
	check(t, "pending before the window's end", pending, int64(0))
	sk, _ = sn.Origin(understudy.OriginBacktest).SkipCounts(ctx, "iris-v2", "ba9876543210", time.Time{}, time.Time{})
	check(t, "skips of a view", sk.Deferred, int64(5))

	// Retention drops the jobs of the requests it deletes, for want of
	// inputs.
	if _, err := db.ApplyRetention(ctx, store.Retention{Days: 1, Now: at.Add(24*time.Hour + 2*time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if n, _ := db.PendingJobs(ctx); n != 0 {
		t.Errorf("%d jobs left after retention", n)
	}
}
