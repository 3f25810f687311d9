package storetest

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/understudy-ml/understudy/pkg/store"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// This file checks understudy.History: the backlog of deferred jobs, the
// dropped jobs by reason, and the stored inputs that backfills and
// backtests replay.

// jobStrings prints jobs as request/shadow/version@seconds after t0.
func jobStrings(jobs []understudy.DeferredJob, t0 time.Time) string {
	var out []string
	for _, j := range jobs {
		out = append(out, fmt.Sprintf("%s/%s/%s@%v", j.RequestID, j.Shadow, j.Version, j.Time.Sub(t0).Seconds()))
	}
	return fmt.Sprint(out)
}

func deferred(tb testing.TB, st store.Store, limit int) []understudy.DeferredJob {
	tb.Helper()
	jobs, err := st.Deferred(context.Background(), limit)
	if err != nil {
		tb.Fatalf("Deferred: %v", err)
	}
	return jobs
}

func pendingJobs(tb testing.TB, st store.Store) int64 {
	tb.Helper()
	n, err := st.PendingJobs(context.Background())
	if err != nil {
		tb.Fatalf("PendingJobs: %v", err)
	}
	return n
}

// skipString prints skips with their reasons, leaving out reasons of none,
// and fails the test unless the reasons add up to Dropped.
func skipString(tb testing.TB, sk store.Skips) string {
	tb.Helper()
	var sum int64
	reasons := map[string]int64{}
	for r, n := range sk.Reasons {
		sum += n
		if n != 0 {
			reasons[r] = n
		}
	}
	if sum != sk.Dropped {
		tb.Errorf("reasons %v add up to %d, not Dropped %d", sk.Reasons, sum, sk.Dropped)
	}
	return fmt.Sprintf("sampled out %d, deferred %d, dropped %d %v", sk.SampledOut, sk.Deferred, sk.Dropped, reasons)
}

func skipCounts(tb testing.TB, s store.Snapshot, shadow, version string, from, to time.Time) string {
	tb.Helper()
	sk, err := s.SkipCounts(context.Background(), shadow, version, from, to)
	if err != nil {
		tb.Fatalf("SkipCounts: %v", err)
	}
	return skipString(tb, sk)
}

// Ensure deferred jobs are pending once each, oldest request first (then
// by request id, shadow and version), counted as deferred at their
// request's minute and not twice when deferred twice; that Pending counts
// a shadow version's jobs in an exact window; and that a backfill result
// removes its job, also when it is a duplicate, while a result of another
// origin does not.
func testBacklog(t *testing.T, open Opener) {
	st := open(t)
	ctx := context.Background()
	t0 := time.Date(2030, 6, 1, 10, 20, 30, 0, time.UTC)
	jobs := []understudy.DeferredJob{
		{RequestID: "q3", Shadow: "s", Version: "v1", Time: t0.Add(2 * time.Minute)},
		{RequestID: "q1", Shadow: "s", Version: "v1", Time: t0},
		{RequestID: "q2", Shadow: "s", Version: "v1", Time: t0},
		{RequestID: "q1", Shadow: "s", Version: "v2", Time: t0},
		{RequestID: "q1", Shadow: "r", Version: "v1", Time: t0},
		{RequestID: "q4", Shadow: "s", Version: "v1", Time: t0.Add(61 * time.Second)},
	}
	for _, j := range jobs {
		st.Defer(j)
	}
	flush(t, st)
	st.Defer(jobs[1]) // already pending
	flush(t, st)

	assertEqual(t, "Deferred", jobStrings(deferred(t, st, 100), t0), "[q1/r/v1@0 q1/s/v1@0 q1/s/v2@0 q2/s/v1@0 q4/s/v1@61 q3/s/v1@120]")
	assertEqual(t, "Deferred, limit 2", jobStrings(deferred(t, st, 2), t0), "[q1/r/v1@0 q1/s/v1@0]")
	assertEqual(t, "PendingJobs", pendingJobs(t, st), 6)
	s := snapshot(t, st)
	assertEqual(t, "skips of s/v1", skipCounts(t, s, "s", "v1", time.Time{}, time.Time{}), "sampled out 0, deferred 4, dropped 0 map[]")
	// Counted at the request's minute, whenever deferred.
	assertEqual(t, "skips of s/v1 in t0's minute", skipCounts(t, s, "s", "v1", t0, t0.Add(time.Second)), "sampled out 0, deferred 2, dropped 0 map[]")
	assertEqual(t, "skips of s/v2", skipCounts(t, s, "s", "v2", time.Time{}, time.Time{}), "sampled out 0, deferred 1, dropped 0 map[]")
	for _, tt := range []struct {
		from, to time.Time
		want     int64
	}{
		{time.Time{}, time.Time{}, 4},
		{t0, t0.Add(2*time.Minute + time.Microsecond), 4},
		// Exact: from included, to excluded, to the microsecond.
		{t0.Add(time.Microsecond), t0.Add(2 * time.Minute), 1},
		{t0.Add(2 * time.Minute), time.Time{}, 1},
		{time.Time{}, t0, 0},
	} {
		n, err := s.Pending(ctx, "s", "v1", tt.from, tt.to)
		if err != nil {
			t.Fatal(err)
		}
		assertEqual(t, "Pending of s/v1 in "+window(tt.from, tt.to), n, tt.want)
	}

	result := func(id, origin string) *understudy.ShadowResult {
		_, r := pairOf(id, t0)
		r.Shadow, r.Version, r.Origin = "s", "v1", origin
		return r
	}
	st.WriteShadowResult(result("q4", understudy.OriginLive))
	st.WriteShadowResult(result("q3", understudy.OriginBacktest))
	st.WriteShadowResult(result("q1", understudy.OriginBackfill))
	st.WriteShadowResult(result("q2", ""))
	flush(t, st)
	// A backfill that ran although the result was already stored.
	st.WriteShadowResult(result("q2", understudy.OriginBackfill))
	flush(t, st)
	assertEqual(t, "duplicate results", st.Stats().ShadowResults.Duplicate, 1)
	assertEqual(t, "Deferred after the results", jobStrings(deferred(t, st, 100), t0), "[q1/r/v1@0 q1/s/v2@0 q4/s/v1@61 q3/s/v1@120]")
	assertEqual(t, "PendingJobs after the results", pendingJobs(t, st), 4)
	assertEqual(t, "skips of s/v1 after the results", skipCounts(t, snapshot(t, st), "s", "v1", time.Time{}, time.Time{}),
		"sampled out 0, deferred 4, dropped 0 map[]")
	if err := st.DropDeferred(ctx, nil, understudy.DropExpired); err != nil {
		t.Errorf("DropDeferred of no job: %v", err)
	}
}

// Ensure dropped jobs are counted by reason at their request's minute:
// CountSkips's as shed, CountDrops's for its reason, and DropDeferred's,
// which removes the jobs still pending and ignores the others; that
// Dropped is the sum of the reasons; and that every view counts every
// origin.
func testDrops(t *testing.T, open Opener) {
	st := open(t)
	ctx := context.Background()
	t0 := time.Date(2030, 6, 1, 10, 20, 0, 0, time.UTC)
	st.CountSkips("s", "v1", t0, 5, 2)
	st.CountDrops("s", "v1", t0.Add(10*time.Second), understudy.DropBacklogFull, 3)
	st.CountDrops("s", "v1", t0.Add(time.Hour), understudy.DropUnloaded, 1)
	st.CountDrops("s", "v2", t0, understudy.DropBacklogFull, 7)
	st.CountDrops("s", "v1", t0, understudy.DropShed, 0) // nothing to count
	a := understudy.DeferredJob{RequestID: "a", Shadow: "s", Version: "v1", Time: t0.Add(5 * time.Second)}
	b := understudy.DeferredJob{RequestID: "b", Shadow: "s", Version: "v1", Time: t0.Add(time.Hour + 5*time.Second)}
	c := understudy.DeferredJob{RequestID: "c", Shadow: "s", Version: "v2", Time: t0.Add(5 * time.Second)}
	for _, j := range []understudy.DeferredJob{a, b, c} {
		st.Defer(j)
	}
	flush(t, st)
	gone := understudy.DeferredJob{RequestID: "gone", Shadow: "s", Version: "v1", Time: t0}
	if err := st.DropDeferred(ctx, []understudy.DeferredJob{a, b, gone}, understudy.DropExpired); err != nil {
		t.Fatalf("DropDeferred: %v", err)
	}
	// No longer pending: not counted again.
	if err := st.DropDeferred(ctx, []understudy.DeferredJob{a}, understudy.DropUnloaded); err != nil {
		t.Fatalf("DropDeferred: %v", err)
	}
	assertEqual(t, "Deferred", jobStrings(deferred(t, st, 10), t0), "[c/s/v2@5]")
	assertEqual(t, "PendingJobs", pendingJobs(t, st), 1)
	s := snapshot(t, st)
	for _, v := range []store.Snapshot{s, s.Origin(understudy.OriginLive), s.Origin(understudy.OriginBackfill)} {
		for _, tt := range []struct {
			shadow, version string
			from, to        time.Time
			want            string
		}{
			{"s", "v1", time.Time{}, time.Time{}, "sampled out 5, deferred 2, dropped 8 map[backlog_full:3 expired:2 shadow_unloaded:1 shed:2]"},
			{"s", "v1", t0, t0.Add(time.Minute), "sampled out 5, deferred 1, dropped 6 map[backlog_full:3 expired:1 shed:2]"},
			{"s", "v1", t0.Add(time.Minute), time.Time{}, "sampled out 0, deferred 1, dropped 2 map[expired:1 shadow_unloaded:1]"},
			{"s", "v2", time.Time{}, time.Time{}, "sampled out 0, deferred 1, dropped 7 map[backlog_full:7]"},
			{"x", "v1", time.Time{}, time.Time{}, "sampled out 0, deferred 0, dropped 0 map[]"},
		} {
			assertEqual(t, fmt.Sprintf("SkipCounts(%s, %s, %s)", tt.shadow, tt.version, window(tt.from, tt.to)),
				skipCounts(t, v, tt.shadow, tt.version, tt.from, tt.to), tt.want)
		}
		n, err := v.Pending(ctx, "s", "v2", time.Time{}, time.Time{})
		if err != nil || n != 1 {
			t.Errorf("Pending of s/v2 = %d, %v; want 1 in every view", n, err)
		}
	}
}

// overCap is the request of historyInputs whose inputs are over the cap.
const overCap = "g"

// historyInputs are the predictions the tests of stored inputs write: ties
// in time, a failed run, another model, inputs over any input cap, and a
// request a canary answered.
func historyInputs(t0 time.Time) []*understudy.Prediction {
	in := func(v float32) map[string]*understudy.Tensor {
		return map[string]*understudy.Tensor{"x": {DType: understudy.Float32, Shape: []int64{1, 2}, Data: []float32{v, v + 1}}}
	}
	out := map[string]*understudy.Tensor{"y": {DType: understudy.Int64, Shape: []int64{1}, Data: []int64{1}}}
	// 2 MiB of inputs: over the input cap of any store Opener opens.
	big := map[string]*understudy.Tensor{"x": {DType: understudy.Float32, Shape: []int64{1, 1 << 19}, Data: make([]float32, 1<<19)}}
	p := func(id string, at time.Duration, model string, inputs map[string]*understudy.Tensor) *understudy.Prediction {
		return &understudy.Prediction{ID: id, Time: t0.Add(at), Model: model, Version: model + "1", Status: understudy.StatusOK,
			Inputs: inputs, Outputs: out, Latency: time.Duration(len(id)+int(at/time.Second)) * time.Millisecond}
	}
	preds := []*understudy.Prediction{
		p("a", 0, "m", in(1)),
		p("c", time.Second, "m", in(3)),
		p("b", time.Second, "m", in(2)),
		p("d", time.Second, "m", in(4)),
		p("e", 2*time.Second, "m", in(5)),
		p("f", 2*time.Second, "other", in(6)),
		p(overCap, 3*time.Second, "m", big),
		p("h", 4*time.Second, "m", in(8)),
	}
	preds[0].ServedBy = understudy.ServedCandidate
	preds[4].Status, preds[4].Error, preds[4].Outputs = understudy.StatusError, "failed", nil
	return preds
}

// checkInput compares a stored input with the prediction written; paired
// ones carry no tensors.
func checkInput(t *testing.T, got *understudy.StoredInput, want *understudy.Prediction, paired bool) {
	t.Helper()
	name := want.ID
	assertEqual(t, name+" Time", got.Time.Equal(want.Time), true)
	assertEqual(t, name+" model", got.Model+"@"+got.Version, want.Model+"@"+want.Version)
	assertEqual(t, name+" Latency", got.Latency, want.Latency)
	assertEqual(t, name+" ServedBy", understudy.StoredServedBy(got.ServedBy), understudy.StoredServedBy(want.ServedBy))
	assertEqual(t, name+" Paired", got.Paired, paired)
	switch {
	case paired:
		assertEqual(t, name+" tensors of a paired request", got.Inputs == nil && got.Outputs == nil, true)
	case want.ID == overCap:
		assertEqual(t, name+" Inputs over the cap", got.Inputs == nil, true)
	default:
		TensorsEqual(t, got.Inputs, want.Inputs)
	}
	if !paired {
		if want.Outputs == nil {
			assertEqual(t, name+" Outputs", got.Outputs == nil, true)
		} else {
			TensorsEqual(t, got.Outputs, want.Outputs)
		}
	}
}

// Ensure StoredInputs returns the predictions of the ids that exist,
// whatever their model and status, with their tensors decoded, and no
// inputs for those over the input cap.
func testStoredInputs(t *testing.T, open Opener) {
	st := open(t)
	t0 := time.Date(2030, 6, 1, 10, 0, 0, 0, time.UTC)
	preds := historyInputs(t0)
	byID := map[string]*understudy.Prediction{}
	for _, p := range preds {
		byID[p.ID] = p
		st.WritePrediction(p)
	}
	flush(t, st)
	// Labels come with the inputs, so that a backtest's accuracy needs no
	// other read.
	labels := map[string]float64{"a": 2, "f": 0.5}
	if _, err := st.SetLabels(context.Background(), []understudy.Label{{ID: "a", Value: 2}, {ID: "f", Value: 0.5}}); err != nil {
		t.Fatal(err)
	}
	labelOf := func(in *understudy.StoredInput) string {
		if in.Label == nil {
			return "none"
		}
		return fmt.Sprint(*in.Label)
	}
	wantLabel := func(id string) string {
		if v, ok := labels[id]; ok {
			return fmt.Sprint(v)
		}
		return "none"
	}
	got, err := st.StoredInputs(context.Background(), []string{"a", "e", "f", "g", "nope"})
	if err != nil {
		t.Fatal(err)
	}
	assertEqual(t, "ids", fmt.Sprint(slices.Sorted(maps.Keys(got))), "[a e f g]")
	for id, in := range got {
		assertEqual(t, id+" RequestID", in.RequestID, id)
		checkInput(t, in, byID[id], false)
		assertEqual(t, id+" Label", labelOf(in), wantLabel(id))
	}
	recent, err := st.RecentInputs(context.Background(), understudy.InputQuery{Model: "other", Limit: 10})
	if err != nil || len(recent) != 1 {
		t.Fatalf("RecentInputs(other) = %v, %v; want f", recent, err)
	}
	assertEqual(t, "f Label from RecentInputs", labelOf(recent[0]), "0.5")
	none, err := st.StoredInputs(context.Background(), nil)
	if err != nil || len(none) != 0 {
		t.Errorf("StoredInputs(nil) = %v, %v", none, err)
	}
}

// Ensure RecentInputs returns the ok predictions of one model, newest
// first by time then request id, from From on; that pages through
// (Before, BeforeID) neither skip nor repeat rows of equal times; and that
// PairedWith marks the requests with a result of that shadow version, of
// any origin, without their tensors.
func testRecentInputs(t *testing.T, open Opener) {
	st := open(t)
	ctx := context.Background()
	t0 := time.Date(2030, 6, 1, 10, 0, 0, 0, time.UTC)
	preds := historyInputs(t0)
	byID := map[string]*understudy.Prediction{}
	for _, p := range preds {
		byID[p.ID] = p
		st.WritePrediction(p)
	}
	for _, r := range []struct{ id, shadow, version, origin string }{
		{"c", "s", "v1", ""}, {"h", "s", "v1", understudy.OriginBacktest}, {"d", "s", "v2", ""}, {"b", "r", "v1", understudy.OriginBackfill},
	} {
		_, s := pairOf(r.id, t0)
		s.Shadow, s.Version, s.Origin = r.shadow, r.version, r.origin
		st.WriteShadowResult(s)
	}
	flush(t, st)
	recent := func(q understudy.InputQuery) []*understudy.StoredInput {
		t.Helper()
		got, err := st.RecentInputs(ctx, q)
		if err != nil {
			t.Fatalf("RecentInputs(%+v): %v", q, err)
		}
		return got
	}
	ids := func(ins []*understudy.StoredInput) string {
		var out []string
		for _, in := range ins {
			out = append(out, in.RequestID)
		}
		return fmt.Sprint(out)
	}

	all := recent(understudy.InputQuery{Model: "m", Limit: 100})
	assertEqual(t, "all", ids(all), "[h g d c b a]")
	for _, in := range all {
		checkInput(t, in, byID[in.RequestID], false)
	}
	assertEqual(t, "limit", ids(recent(understudy.InputQuery{Model: "m", Limit: 3})), "[h g d]")
	assertEqual(t, "from", ids(recent(understudy.InputQuery{Model: "m", From: t0.Add(time.Second), Limit: 100})), "[h g d c b]")
	assertEqual(t, "another model", ids(recent(understudy.InputQuery{Model: "other", Limit: 100})), "[f]")
	assertEqual(t, "before, without an id", ids(recent(understudy.InputQuery{Model: "m", Before: t0.Add(3 * time.Second), Limit: 100})), "[d c b a]")

	t.Run("pages", func(t *testing.T) {
		var pages []string
		q := understudy.InputQuery{Model: "m", From: t0.Add(time.Second), Limit: 2}
		for range 10 {
			page := recent(q)
			if len(page) == 0 {
				break
			}
			pages = append(pages, ids(page))
			last := page[len(page)-1]
			q.Before, q.BeforeID = last.Time, last.RequestID
		}
		assertEqual(t, "pages", fmt.Sprint(pages), "[[h g] [d c] [b]]")
	})

	t.Run("paired", func(t *testing.T) {
		got := recent(understudy.InputQuery{Model: "m", Limit: 100, PairedWith: understudy.ModelRef{Name: "s", Version: "v1"}})
		assertEqual(t, "all", ids(got), "[h g d c b a]")
		for _, in := range got {
			checkInput(t, in, byID[in.RequestID], in.RequestID == "c" || in.RequestID == "h")
		}
	})
}

// Ensure retention deletes the deferred jobs whose request is older than
// its cutoff, since their inputs go too, and keeps the others.
func testRetentionBacklog(t *testing.T, open Opener) {
	st := open(t)
	ctx := context.Background()
	now := time.Date(2030, 6, 10, 12, 0, 0, 0, time.UTC)
	for i, age := range []time.Duration{5 * 24 * time.Hour, time.Hour} {
		p, _ := pairOf(fmt.Sprint("r", i), now.Add(-age))
		st.WritePrediction(p)
		st.Defer(understudy.DeferredJob{RequestID: p.ID, Shadow: "s", Version: "v", Time: p.Time})
	}
	flush(t, st)
	if _, err := st.ApplyRetention(ctx, store.Retention{Days: 3, Now: now}); err != nil {
		t.Fatalf("ApplyRetention: %v", err)
	}
	assertEqual(t, "Deferred", jobStrings(deferred(t, st, 10), now), "[r1/s/v@-3600]")
	assertEqual(t, "PendingJobs", pendingJobs(t, st), 1)
	n, err := snapshot(t, st).Pending(ctx, "s", "v", time.Time{}, time.Time{})
	if err != nil || n != 1 {
		t.Errorf("Pending = %d, %v; want 1", n, err)
	}
}

// Ensure the backlog, the skip and drop counters and the origins of
// results survive closing the store and opening its database again, and
// that a job still pending is not deferred twice across the restart.
func testHistoryReopen(t *testing.T, reopen Reopener) {
	open := reopen(t)
	st := open()
	ctx := context.Background()
	t0 := time.Date(2030, 6, 1, 10, 20, 0, 0, time.UTC)
	p1, r1 := pairOf("j1", t0)
	p2, _ := pairOf("j2", t0.Add(time.Second))
	st.WritePrediction(p1)
	st.WritePrediction(p2)
	j1 := understudy.DeferredJob{RequestID: "j1", Shadow: r1.Shadow, Version: r1.Version, Time: t0}
	j2 := understudy.DeferredJob{RequestID: "j2", Shadow: r1.Shadow, Version: r1.Version, Time: p2.Time}
	st.Defer(j1)
	st.Defer(j2)
	st.CountSkips(r1.Shadow, r1.Version, t0, 3, 1)
	st.CountDrops(r1.Shadow, r1.Version, t0, understudy.DropBacklogFull, 2)
	flush(t, st)
	r1.Origin = understudy.OriginBackfill
	st.WriteShadowResult(r1)
	if err := st.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	st = open()
	st.Defer(j2) // still pending
	flush(t, st)
	assertEqual(t, "Deferred", jobStrings(deferred(t, st, 10), t0), "[j2/iris-v2/ba9876543210@1]")
	assertEqual(t, "PendingJobs", pendingJobs(t, st), 1)
	s := snapshot(t, st)
	assertEqual(t, "skips", skipCounts(t, s, r1.Shadow, r1.Version, time.Time{}, time.Time{}),
		"sampled out 3, deferred 2, dropped 3 map[backlog_full:2 shed:1]")
	r, err := s.Origin(understudy.OriginBackfill).Request(ctx, "j1")
	if err != nil || len(r.Shadows) != 1 || r.Shadows[0].Origin != understudy.OriginBackfill {
		t.Errorf("Request(j1) through the backfill view = %+v, %v; want its backfill result", r, err)
	}
	ins, err := st.StoredInputs(ctx, []string{"j2"})
	if err != nil || ins["j2"] == nil {
		t.Fatalf("StoredInputs(j2) = %v, %v", ins, err)
	}
	TensorsEqual(t, ins["j2"].Inputs, p2.Inputs)
}
