package shadow_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/understudy-ml/understudy/pkg/onnxbuild"
	"github.com/understudy-ml/understudy/pkg/registry"
	"github.com/understudy-ml/understudy/pkg/shadow"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// The logic of deferral, backfill and backtest against an in-memory
// History; the store backends' History is tested by store/storetest, and
// the whole path with real stores in cmd/understudy's lossless tests.

// memHistory is an in-memory History over stored inputs.
type memHistory struct {
	mu      sync.Mutex
	inputs  map[string]*understudy.StoredInput
	backlog []understudy.DeferredJob
	drops   map[string]int64 // by reason
	paired  map[string]bool  // request ids with a result of the backtested shadow
}

func newMemHistory() *memHistory {
	return &memHistory{inputs: map[string]*understudy.StoredInput{}, drops: map[string]int64{}, paired: map[string]bool{}}
}

func (h *memHistory) Defer(j understudy.DeferredJob) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.backlog = append(h.backlog, j)
}

func (h *memHistory) CountDrops(_, _ string, _ time.Time, reason string, n int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.drops[reason] += n
}

func (h *memHistory) Deferred(_ context.Context, limit int) ([]understudy.DeferredJob, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := slices.Clone(h.backlog)
	slices.SortFunc(out, func(a, b understudy.DeferredJob) int { return a.Time.Compare(b.Time) })
	return out[:min(limit, len(out))], nil
}

func (h *memHistory) PendingJobs(context.Context) (int64, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return int64(len(h.backlog)), nil
}

func (h *memHistory) remove(j understudy.DeferredJob) {
	h.backlog = slices.DeleteFunc(h.backlog, func(x understudy.DeferredJob) bool {
		return x.RequestID == j.RequestID && x.Shadow == j.Shadow && x.Version == j.Version
	})
}

func (h *memHistory) DropDeferred(_ context.Context, jobs []understudy.DeferredJob, reason string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, j := range jobs {
		h.remove(j)
		h.drops[reason]++
	}
	return nil
}

func (h *memHistory) StoredInputs(_ context.Context, ids []string) (map[string]*understudy.StoredInput, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string]*understudy.StoredInput{}
	for _, id := range ids {
		if in, ok := h.inputs[id]; ok {
			out[id] = in
		}
	}
	return out, nil
}

func (h *memHistory) RecentInputs(_ context.Context, q understudy.InputQuery) ([]*understudy.StoredInput, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var all []*understudy.StoredInput
	for _, in := range h.inputs {
		if in.Model != q.Model {
			continue
		}
		if !q.Before.IsZero() && (in.Time.After(q.Before) || in.Time.Equal(q.Before) && in.RequestID >= q.BeforeID) {
			continue
		}
		c := *in
		c.Paired = h.paired[in.RequestID]
		all = append(all, &c)
	}
	slices.SortFunc(all, func(a, b *understudy.StoredInput) int {
		if c := b.Time.Compare(a.Time); c != 0 {
			return c
		}
		switch {
		case a.RequestID > b.RequestID:
			return -1
		case a.RequestID < b.RequestID:
			return 1
		}
		return 0
	})
	return all[:min(q.Limit, len(all))], nil
}

// removing is a recorder that removes a backfill result's job, as the
// stores do.
type removing struct {
	*recorder
	h *memHistory
}

func (r removing) WriteShadowResult(res *understudy.ShadowResult) {
	r.recorder.WriteShadowResult(res)
	if res.Origin == understudy.OriginBackfill {
		r.h.mu.Lock()
		r.h.remove(understudy.DeferredJob{RequestID: res.RequestID, Shadow: res.Shadow, Version: res.Version})
		r.h.mu.Unlock()
	}
}

// store adds a prediction of primary to h, as the server stores it.
func (h *memHistory) store(tb testing.TB, primary *registry.Model, id string, at time.Time, x []float32) *understudy.Prediction {
	p := prediction(tb, primary, id, x)
	p.Time = at
	h.mu.Lock()
	h.inputs[id] = &understudy.StoredInput{RequestID: id, Time: at, Model: primary.Name, Version: primary.Version,
		Inputs: p.Inputs, Outputs: p.Outputs, Latency: p.Latency}
	h.mu.Unlock()
	return p
}

func mlp(seed int64) *onnxbuild.Model { return onnxbuild.RandomMLP(seed, 4, []int{8}, 3).Model("m") }

// Ensure jobs shedding turns away are deferred up to the backlog's bound,
// and dropped for backlog_full beyond it; none runs live.
func TestShedDefersIntoBoundedBacklog(t *testing.T) {
	s := realModel(t, "s", mlp(2), registry.Settings{Sampling: 1, Timeout: time.Second})
	primary := realModel(t, "p", mlp(1), registry.Settings{})
	h, rec := newMemHistory(), newRecorder()
	m := shadow.New(shadow.Config{Workers: 1, Busy: func() bool { return true }, History: h, Backlog: 3,
		IdleFor: time.Hour}, acquireAll(s), removing{rec, h}, nil, zerolog.Nop())
	for i := range 5 {
		p := h.store(t, primary, fmt.Sprint("r", i), time.Now(), []float32{1, 2, 3, float32(i)})
		m.Submit(p, primary.Signature.Outputs)
	}
	deadline := time.Now().Add(5 * time.Second)
	for m.QueueDepth() > 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	m.Close(context.Background())
	if n, _ := h.PendingJobs(context.Background()); n != 3 || h.drops[understudy.DropBacklogFull] != 2 || len(rec.results) != 0 || rec.dropped["s"] != 0 {
		t.Errorf("%d deferred, drops %v, %d results, %d shed; want 3 deferred and 2 dropped for backlog_full", n, h.drops, len(rec.results), rec.dropped["s"])
	}
}

// Ensure backfill waits for the server to be idle, then runs the deferred
// jobs it can as backfill pairs at the request's time, with the same
// comparison as live, and drops the others with their reasons.
func TestBackfillRunsWhenIdle(t *testing.T) {
	s := realModel(t, "s", mlp(2), registry.Settings{Sampling: 1, Timeout: time.Second})
	primary := realModel(t, "p", mlp(1), registry.Settings{})
	h, rec := newMemHistory(), newRecorder()
	at := time.Now().Add(-time.Minute).Truncate(time.Microsecond)
	var want []string
	for i := range 4 {
		id := fmt.Sprint("ok", i)
		h.store(t, primary, id, at.Add(time.Duration(i)*time.Millisecond), []float32{1, float32(i), 3, 4})
		h.Defer(understudy.DeferredJob{RequestID: id, Shadow: "s", Version: s.Version, Time: at.Add(time.Duration(i) * time.Millisecond)})
		want = append(want, id)
	}
	h.store(t, primary, "capped", at, []float32{1, 1, 1, 1})
	h.inputs["capped"].Inputs = nil // over the input cap
	h.Defer(understudy.DeferredJob{RequestID: "capped", Shadow: "s", Version: s.Version, Time: at})
	h.Defer(understudy.DeferredJob{RequestID: "gone", Shadow: "s", Version: s.Version, Time: at})
	h.Defer(understudy.DeferredJob{RequestID: "ok0", Shadow: "s", Version: "old", Time: at})
	h.store(t, primary, "stale", at.Add(-2*time.Hour), []float32{1, 1, 1, 1})
	h.Defer(understudy.DeferredJob{RequestID: "stale", Shadow: "s", Version: s.Version, Time: at.Add(-2 * time.Hour)})

	var inFlight atomic.Int64
	inFlight.Store(1)
	m := shadow.New(shadow.Config{Workers: 1, History: h, Backlog: 100, MaxAge: time.Hour, IdleFor: 20 * time.Millisecond,
		InFlight: inFlight.Load, Primary: func() (*registry.Model, bool) { return primary, primary.Acquire() }},
		acquireAll(s), removing{rec, h}, nil, zerolog.Nop())
	defer m.Close(context.Background())
	time.Sleep(200 * time.Millisecond)
	if n := len(rec.byShadow()["s"]); n != 0 {
		t.Fatalf("%d jobs backfilled while a request was in flight", n)
	}
	inFlight.Store(0)
	deadline := time.Now().Add(5 * time.Second)
	for m.Pending() > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	got := rec.byShadow()["s"]
	var ids []string
	for _, r := range got {
		in := h.inputs[r.RequestID]
		if r.Origin != understudy.OriginBackfill || !r.Time.Equal(in.Time) || r.Status != understudy.StatusOK {
			t.Errorf("%s: origin %q, time %v, status %s; want backfill at the request's time %v", r.RequestID, r.Origin, r.Time, r.Status, in.Time)
		}
		live := understudy.Compare(primary.Signature.Outputs, in.Outputs, r.Outputs)
		if *live.Agreement != *r.Compare.Agreement || *live.MaxAbsDiff != *r.Compare.MaxAbsDiff {
			t.Errorf("%s: comparison %+v, want %+v", r.RequestID, r.Compare, live)
		}
		ids = append(ids, r.RequestID)
	}
	slices.Sort(ids)
	if !slices.Equal(ids, want) {
		t.Errorf("backfilled %v, want %v", ids, want)
	}
	wantDrops := map[string]int64{understudy.DropNoInputs: 2, understudy.DropUnloaded: 1, understudy.DropExpired: 1}
	for reason, n := range wantDrops {
		if h.drops[reason] != n {
			t.Errorf("drops %v, want %v", h.drops, wantDrops)
			break
		}
	}
	if n, _ := h.PendingJobs(context.Background()); n != 0 || m.Pending() != 0 {
		t.Errorf("%d jobs left, mirror counts %d", n, m.Pending())
	}
}

// Ensure admission by queue delay runs a fresh job even while the primary
// is busy, and defers one whose request waited longer than the bound.
func TestQueueDelayAdmission(t *testing.T) {
	s := realModel(t, "s", mlp(2), registry.Settings{Sampling: 1, Timeout: time.Second})
	primary := realModel(t, "p", mlp(1), registry.Settings{})
	h, rec := newMemHistory(), newRecorder()
	m := shadow.New(shadow.Config{Workers: 1, Busy: func() bool { return true }, MaxQueueDelay: 50 * time.Millisecond,
		History: h, Backlog: 10, IdleFor: time.Hour}, acquireAll(s), removing{rec, h}, nil, zerolog.Nop())
	fresh := h.store(t, primary, "fresh", time.Now(), []float32{1, 2, 3, 4})
	old := h.store(t, primary, "old", time.Now().Add(-time.Second), []float32{1, 2, 3, 4})
	m.Submit(fresh, primary.Signature.Outputs)
	m.Submit(old, primary.Signature.Outputs)
	m.Close(context.Background())
	got := rec.byShadow()["s"]
	if len(got) != 1 || got[0].RequestID != "fresh" || got[0].Origin != understudy.OriginLive {
		t.Errorf("live results %v; want only the fresh request's", got)
	}
	if jobs, _ := h.Deferred(context.Background(), 10); len(jobs) != 1 || jobs[0].RequestID != "old" {
		t.Errorf("deferred %v; want the old request's job", jobs)
	}
}

// Ensure a backtest runs the newest stored requests up to its row count,
// skips those already paired, counts those without inputs as not
// backtestable, and says so in its summary.
func TestBacktestNewestFirst(t *testing.T) {
	s := realModel(t, "s", mlp(2), registry.Settings{Sampling: 1, Timeout: time.Second})
	primary := realModel(t, "p", mlp(1), registry.Settings{})
	h, rec := newMemHistory(), newRecorder()
	base := time.Now().Add(-time.Hour).Truncate(time.Microsecond)
	const n, rows = 700, 600
	for i := range n {
		// Pairs of requests share a time, so that pages end inside ties.
		h.store(t, primary, fmt.Sprintf("q%04d", i), base.Add(time.Duration(i/2)*time.Millisecond), []float32{1, float32(i % 5), 3, 4})
	}
	h.paired["q0699"], h.paired["q0500"] = true, true
	h.inputs["q0600"].Inputs = nil
	done := make(chan shadow.BacktestSummary, 1)
	m := shadow.New(shadow.Config{Workers: 1, History: h, BacktestRows: rows, IdleFor: time.Millisecond,
		Primary:    func() (*registry.Model, bool) { return primary, primary.Acquire() },
		OnBacktest: func(s shadow.BacktestSummary) { done <- s }},
		acquireAll(s), rec, nil, zerolog.Nop())
	defer m.Close(context.Background())
	m.Backtest(s.Ref())
	var sum shadow.BacktestSummary
	select {
	case sum = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("no backtest summary")
	}
	if sum.Err != nil || sum.Considered != rows || sum.Paired != 2 || sum.NotBacktestable != 1 || sum.Ran != rows-3 {
		t.Errorf("summary %+v; want %d considered, 2 paired, 1 not backtestable", sum, rows)
	}
	seen := map[string]bool{}
	for _, r := range rec.byShadow()["s"] {
		if r.Origin != understudy.OriginBacktest || seen[r.RequestID] {
			t.Errorf("%s: origin %q (seen before: %v)", r.RequestID, r.Origin, seen[r.RequestID])
		}
		seen[r.RequestID] = true
	}
	for i := n - rows; i < n; i++ {
		id := fmt.Sprintf("q%04d", i)
		if want := !h.paired[id] && id != "q0600"; seen[id] != want {
			t.Errorf("%s: ran %v, want %v", id, seen[id], want)
		}
	}
	if h.drops[understudy.DropNotBacktestable] != 1 {
		t.Errorf("drops %v; want one not backtestable", h.drops)
	}
}

// Ensure a backtest runs only the requests stored before it was asked for:
// later ones are the shadow's live traffic, whose shed jobs the backlog
// owns.
func TestBacktestStopsAtItsStart(t *testing.T) {
	s := realModel(t, "s", mlp(2), registry.Settings{Sampling: 1, Timeout: time.Second})
	primary := realModel(t, "p", mlp(1), registry.Settings{})
	h, rec := newMemHistory(), newRecorder()
	now := time.Now()
	h.store(t, primary, "before", now.Add(-time.Second), []float32{1, 2, 3, 4})
	var inFlight atomic.Int64
	inFlight.Store(1) // busy: the backtest waits for idle
	done := make(chan shadow.BacktestSummary, 1)
	m := shadow.New(shadow.Config{Workers: 1, History: h, BacktestRows: 10, IdleFor: time.Millisecond, InFlight: inFlight.Load,
		Primary:    func() (*registry.Model, bool) { return primary, primary.Acquire() },
		OnBacktest: func(s shadow.BacktestSummary) { done <- s }},
		acquireAll(s), rec, nil, zerolog.Nop())
	defer m.Close(context.Background())
	m.Backtest(s.Ref())
	time.Sleep(20 * time.Millisecond)
	// A request served after the shadow arrived, stored while the
	// backtest waits.
	h.store(t, primary, "after", time.Now(), []float32{4, 3, 2, 1})
	inFlight.Store(0)
	select {
	case sum := <-done:
		if sum.Ran != 1 || sum.Considered != 1 {
			t.Errorf("summary %+v; want only the request stored before the backtest", sum)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no backtest summary")
	}
	for _, r := range rec.byShadow()["s"] {
		if r.RequestID != "before" {
			t.Errorf("backtest ran %s, stored after it was asked for", r.RequestID)
		}
	}
}

// Ensure requests that come and go between two looks at the requests in
// flight still keep backfill waiting: the gate counts arrivals.
func TestBackfillWaitsForArrivalsToStop(t *testing.T) {
	s := realModel(t, "s", mlp(2), registry.Settings{Sampling: 1, Timeout: time.Second})
	primary := realModel(t, "p", mlp(1), registry.Settings{})
	h, rec := newMemHistory(), newRecorder()
	h.store(t, primary, "r", time.Now(), []float32{1, 2, 3, 4})
	h.Defer(understudy.DeferredJob{RequestID: "r", Shadow: "s", Version: s.Version, Time: time.Now()})
	var arrived atomic.Int64
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
				arrived.Add(1) // a short request, never seen in flight
			}
		}
	}()
	m := shadow.New(shadow.Config{Workers: 1, History: h, Backlog: 10, IdleFor: 50 * time.Millisecond,
		InFlight: func() int64 { return 0 }, Arrived: arrived.Load},
		acquireAll(s), removing{rec, h}, nil, zerolog.Nop())
	defer m.Close(context.Background())
	time.Sleep(300 * time.Millisecond)
	if n := len(rec.byShadow()["s"]); n != 0 {
		close(stop)
		t.Fatalf("%d jobs backfilled while requests kept arriving", n)
	}
	close(stop)
	for deadline := time.Now().Add(5 * time.Second); m.Pending() > 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if got := rec.byShadow()["s"]; len(got) != 1 || got[0].Origin != understudy.OriginBackfill {
		t.Errorf("results %v; want the job backfilled once arrivals stopped", got)
	}
}
