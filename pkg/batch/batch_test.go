package batch

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/understudy-ml/understudy/pkg/understudy"
)

// doubler is a Runner for the batcher's logic: y = 2x row by row, on x
// [-1,k]. It fails a run that contains a negative value, and records the
// rows of every run. gate, when set, holds each run until it is closed or
// receives.
type doubler struct {
	mu      sync.Mutex
	runs    []int64
	gate    chan struct{}
	started chan struct{}
	extra   int64 // extra output rows, to play a model whose rows are not independent
	// panicAbove makes a run of more rows than this panic, when set.
	panicAbove int64
}

var sig = understudy.Signature{
	Inputs:  []understudy.TensorInfo{{Name: "x", DType: understudy.Float32, Dims: []int64{-1, -1}}},
	Outputs: []understudy.TensorInfo{{Name: "y", DType: understudy.Float32, Dims: []int64{-1, -1}}},
}

func (d *doubler) Run(ctx context.Context, in map[string]*understudy.Tensor) (map[string]*understudy.Tensor, error) {
	x := in["x"]
	d.mu.Lock()
	d.runs = append(d.runs, x.Shape[0])
	d.mu.Unlock()
	if d.started != nil {
		d.started <- struct{}{}
	}
	if d.gate != nil {
		select {
		case <-d.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if d.panicAbove > 0 && x.Shape[0] > d.panicAbove {
		panic("merged run panicked")
	}
	xs := x.Data.([]float32)
	if slices.ContainsFunc(xs, func(v float32) bool { return v < 0 }) {
		return nil, errors.New("negative input")
	}
	y := make([]float32, len(xs), len(xs)+int(d.extra*x.Shape[1]))
	for i, v := range xs {
		y[i] = 2 * v
	}
	y = append(y, make([]float32, d.extra*x.Shape[1])...)
	return map[string]*understudy.Tensor{"y": {DType: understudy.Float32, Shape: []int64{x.Shape[0] + d.extra, x.Shape[1]}, Data: y}}, nil
}

func (d *doubler) Close() error { return nil }

func (d *doubler) rowsPerRun() []int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.runs)
}

// rowsOf makes an input of n rows of width k whose values start at v.
func rowsOf(n, k int, v float32) map[string]*understudy.Tensor {
	x := make([]float32, n*k)
	for i := range x {
		x[i] = v + float32(i)
	}
	return map[string]*understudy.Tensor{"x": {DType: understudy.Float32, Shape: []int64{int64(n), int64(k)}, Data: x}}
}

type answer struct {
	out map[string]*understudy.Tensor
	err error
}

// checkDoubled fails unless out is 2 × in, with in's shape.
func checkDoubled(t *testing.T, in map[string]*understudy.Tensor, a answer) {
	t.Helper()
	if a.err != nil {
		t.Fatalf("run: %v", a.err)
	}
	x, y := in["x"], a.out["y"]
	if !slices.Equal(y.Shape, x.Shape) {
		t.Fatalf("shape %v, want %v", y.Shape, x.Shape)
	}
	for i, v := range x.Data.([]float32) {
		if got := y.Data.([]float32)[i]; got != 2*v {
			t.Fatalf("y[%d] = %v, want %v", i, got, 2*v)
		}
	}
}

// queue starts one busy run on a batcher with one slot, then the given
// requests, which all wait behind it; it returns a func that lets every run
// go and collects the answers in order.
func queue(t *testing.T, b *Batcher, d *doubler, ins []map[string]*understudy.Tensor) func() []answer {
	t.Helper()
	d.gate = make(chan struct{})
	d.started = make(chan struct{}, 100)
	busy := make(chan answer, 1)
	go func() {
		out, err := b.Run(context.Background(), rowsOf(1, 2, 100))
		busy <- answer{out, err}
	}()
	<-d.started
	answers := make([]chan answer, len(ins))
	for i, in := range ins {
		answers[i] = make(chan answer, 1)
		go func() {
			out, err := b.Run(context.Background(), in)
			answers[i] <- answer{out, err}
		}()
		waitPending(t, b, i+1)
	}
	return func() []answer {
		close(d.gate)
		if a := <-busy; a.err != nil {
			t.Fatalf("the busy run: %v", a.err)
		}
		res := make([]answer, len(ins))
		for i := range ins {
			res[i] = <-answers[i]
		}
		return res
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting")
		}
	}
}

// waitPending waits until n requests wait in b.
func waitPending(t *testing.T, b *Batcher, n int) {
	t.Helper()
	waitFor(t, func() bool { b.mu.Lock(); defer b.mu.Unlock(); return len(b.pending) == n })
}

func newBatcher(t *testing.T, d *doubler, o Options) *Batcher {
	t.Helper()
	o.Slots = max(o.Slots, 1)
	b, err := New(d, sig, o)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Ensure requests waiting behind a busy run are merged: oldest first, each
// run taking every later request that still fits in MaxRows and has the
// same row shape, and that each still gets its own rows of the answer.
func TestWaitingRequestsAreMerged(t *testing.T) {
	for _, tc := range []struct {
		name       string
		maxRows    int
		ins        []map[string]*understudy.Tensor
		rowsPerRun []int64 // the busy run first
		merged     Stats
	}{
		{"share one run", 16,
			[]map[string]*understudy.Tensor{rowsOf(1, 2, 0), rowsOf(3, 2, 10), rowsOf(2, 2, 20)},
			[]int64{1, 6}, Stats{Runs: 1, Requests: 3}},
		// 2+2, then 3+1, then the 5-row request, over the limit, alone.
		{"MaxRows splits the queue", 4,
			[]map[string]*understudy.Tensor{rowsOf(2, 2, 0), rowsOf(2, 2, 10), rowsOf(3, 2, 20), rowsOf(1, 2, 30), rowsOf(5, 2, 40)},
			[]int64{1, 4, 4, 5}, Stats{Runs: 2, Requests: 4}},
		// Width 2 together, width 3 alone.
		{"different row shapes are not stacked", 16,
			[]map[string]*understudy.Tensor{rowsOf(1, 2, 0), rowsOf(1, 3, 10), rowsOf(1, 2, 20)},
			[]int64{1, 2, 1}, Stats{Runs: 1, Requests: 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &doubler{}
			b := newBatcher(t, d, Options{MaxRows: tc.maxRows})
			for i, a := range queue(t, b, d, tc.ins)() {
				checkDoubled(t, tc.ins[i], a)
			}
			if got := d.rowsPerRun(); !slices.Equal(got, tc.rowsPerRun) {
				t.Errorf("rows per run %v, want %v", got, tc.rowsPerRun)
			}
			if got := b.Stats(); got != tc.merged {
				t.Errorf("stats %+v, want %+v", got, tc.merged)
			}
		})
	}
}

func TestAFreeSlotRunsAtOnceAndAlone(t *testing.T) {
	d := &doubler{}
	b := newBatcher(t, d, Options{MaxRows: 16, Slots: 2})
	for i := range 3 {
		in := rowsOf(2, 3, float32(i))
		out, err := b.Run(context.Background(), in)
		checkDoubled(t, in, answer{out, err})
	}
	if got := d.rowsPerRun(); !slices.Equal(got, []int64{2, 2, 2}) {
		t.Errorf("rows per run %v, want three single runs", got)
	}
}

func TestAFailingRowFailsOnlyItsRequest(t *testing.T) {
	d := &doubler{}
	b := newBatcher(t, d, Options{MaxRows: 16})
	bad := rowsOf(1, 2, -5)
	ins := []map[string]*understudy.Tensor{rowsOf(1, 2, 0), bad, rowsOf(2, 2, 20)}
	got := queue(t, b, d, ins)()
	for i, a := range got {
		if i == 1 {
			if a.err == nil || a.err.Error() != "negative input" {
				t.Errorf("the bad request got %v, want its own error", a.err)
			}
			continue
		}
		checkDoubled(t, ins[i], a)
	}
	if s := b.Stats(); s.Runs != 0 {
		t.Errorf("stats %+v: a failed merged run must not count", s)
	}
}

func TestRowsThatDoNotLineUpSwitchMergingOff(t *testing.T) {
	d := &doubler{extra: 1}
	var reasons []string
	b := newBatcher(t, d, Options{MaxRows: 16, OnDisable: func(r string) { reasons = append(reasons, r) }})
	ins := []map[string]*understudy.Tensor{rowsOf(1, 2, 0), rowsOf(1, 2, 10)}
	for i, a := range queue(t, b, d, ins)() {
		if a.err != nil {
			t.Fatalf("request %d: %v", i, a.err)
		}
		// Answered by its own run: the model's own output, extra row and all.
		if y := a.out["y"]; y.Shape[0] != 2 || y.Data.([]float32)[0] != 2*ins[i]["x"].Data.([]float32)[0] {
			t.Errorf("request %d: got %v %v, want its own run's answer", i, y.Shape, y.Data)
		}
	}
	if len(reasons) != 1 || b.Stats().Disabled == "" {
		t.Fatalf("OnDisable called %d times (%q), stats %+v; want once", len(reasons), reasons, b.Stats())
	}
	// From now on requests pass straight through, even with no free slot.
	d.gate, d.started = nil, nil
	n := len(d.rowsPerRun())
	if _, err := b.Run(context.Background(), rowsOf(3, 2, 0)); err != nil {
		t.Fatal(err)
	}
	if got := d.rowsPerRun()[n:]; !slices.Equal(got, []int64{3}) {
		t.Errorf("runs after switching off %v, want [3]", got)
	}
}

func TestAWaitingRequestCanGiveUp(t *testing.T) {
	d := &doubler{gate: make(chan struct{}), started: make(chan struct{}, 10)}
	b := newBatcher(t, d, Options{MaxRows: 16})
	busy := make(chan error, 1)
	go func() { _, err := b.Run(context.Background(), rowsOf(1, 2, 0)); busy <- err }()
	<-d.started
	ctx, cancel := context.WithCancel(context.Background())
	gaveUp := make(chan error, 1)
	go func() { _, err := b.Run(ctx, rowsOf(1, 2, 1)); gaveUp <- err }()
	waitPending(t, b, 1)
	cancel()
	if err := <-gaveUp; !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	b.mu.Lock()
	left := len(b.pending)
	b.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d requests still pending after giving up", left)
	}
	close(d.gate)
	if err := <-busy; err != nil {
		t.Fatal(err)
	}
	// The slot came back: a new request runs at once.
	d.gate = nil
	in := rowsOf(1, 2, 7)
	out, err := b.Run(context.Background(), in)
	checkDoubled(t, in, answer{out, err})
	if got := d.rowsPerRun(); !slices.Equal(got, []int64{1, 1}) {
		t.Errorf("rows per run %v, want the busy run and the last one", got)
	}
}

func TestCPUIsSharedByRows(t *testing.T) {
	r := &cpuRunner{doubler: &doubler{}, cpu: 900 * time.Microsecond}
	b, err := New(r, sig, Options{MaxRows: 16, Slots: 1})
	if err != nil {
		t.Fatal(err)
	}
	r.gate = make(chan struct{})
	r.started = make(chan struct{}, 10)
	go b.Run(context.Background(), rowsOf(1, 2, 0))
	<-r.started
	var st [2]understudy.RunStats
	var wg sync.WaitGroup
	for i, n := range []int{1, 2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := b.Run(understudy.WithRunStats(context.Background(), &st[i]), rowsOf(n, 2, 0)); err != nil {
				t.Error(err)
			}
		}()
		waitPending(t, b, i+1)
	}
	close(r.gate)
	wg.Wait()
	if st[0].CPU != 300*time.Microsecond || st[1].CPU != 600*time.Microsecond {
		t.Errorf("CPU %v and %v, want 300µs and 600µs: 900µs shared 1:2", st[0].CPU, st[1].CPU)
	}
}

// cpuRunner reports a fixed CPU time for every run.
type cpuRunner struct {
	*doubler
	cpu time.Duration
}

func (c *cpuRunner) Run(ctx context.Context, in map[string]*understudy.Tensor) (map[string]*understudy.Tensor, error) {
	if st := understudy.RunStatsFrom(ctx); st != nil {
		st.CPU = c.cpu
	}
	return c.doubler.Run(ctx, in)
}

func TestMergeable(t *testing.T) {
	for _, tc := range []struct {
		in, out []int64
		ok      bool
	}{
		{[]int64{-1, 4}, []int64{-1, 3}, true},
		{[]int64{1, 4}, []int64{-1, 3}, false},
		{[]int64{-1, 4}, []int64{}, false},
		{[]int64{-1, 4}, []int64{3}, false},
	} {
		s := understudy.Signature{
			Inputs:  []understudy.TensorInfo{{Name: "x", DType: understudy.Float32, Dims: tc.in}},
			Outputs: []understudy.TensorInfo{{Name: "y", DType: understudy.Float32, Dims: tc.out}},
		}
		ok, why := Mergeable(s)
		if ok != tc.ok || (!ok && why == "") {
			t.Errorf("Mergeable(%v → %v) = %v %q, want %v with a reason when false", tc.in, tc.out, ok, why, tc.ok)
		}
		if _, err := New(&doubler{}, s, Options{MaxRows: 8}); (err == nil) != tc.ok {
			t.Errorf("New(%v → %v) error %v, want error %v", tc.in, tc.out, err, !tc.ok)
		}
	}
}

// Ensure a merged run that panics leaves no request waiting: the panic
// reaches the request that ran it, and every other one is answered by a run
// of its own.
func TestAPanickingMergedRunStrandsNobody(t *testing.T) {
	d := &doubler{panicAbove: 1, gate: make(chan struct{}), started: make(chan struct{}, 10)}
	b := newBatcher(t, d, Options{MaxRows: 16})
	run := func(in map[string]*understudy.Tensor) (a answer, panicked bool) {
		defer func() {
			if recover() != nil {
				panicked = true
			}
		}()
		out, err := b.Run(context.Background(), in)
		return answer{out, err}, false
	}
	go run(rowsOf(1, 2, 0))
	<-d.started
	ins := []map[string]*understudy.Tensor{rowsOf(1, 2, 10), rowsOf(1, 2, 20), rowsOf(1, 2, 30)}
	type result struct {
		a        answer
		panicked bool
	}
	results := make([]chan result, len(ins))
	for i, in := range ins {
		results[i] = make(chan result, 1)
		go func() { a, p := run(in); results[i] <- result{a, p} }()
		waitPending(t, b, i+1)
	}
	close(d.gate)
	panics := 0
	for i := range ins {
		select {
		case r := <-results[i]:
			if r.panicked {
				panics++
				continue
			}
			checkDoubled(t, ins[i], r.a)
		case <-time.After(10 * time.Second):
			t.Fatalf("request %d never answered", i)
		}
	}
	if panics != 1 {
		t.Errorf("%d requests saw the panic, want the one that ran the merged run", panics)
	}
}

// Ensure BusySlots apply only while requests pile up: two requests alone
// run side by side on two slots, but right after a hand-over found several
// waiting, a request that finds one run in flight waits for it.
func TestBusySlotsOnlyWhileRequestsPileUp(t *testing.T) {
	d := &doubler{gate: make(chan struct{}), started: make(chan struct{}, 100)}
	b := newBatcher(t, d, Options{MaxRows: 16, Slots: 2, BusySlots: 1})
	b.busyHold = time.Hour // a slow machine must not end the busy spell mid-test
	var wg sync.WaitGroup
	run := func(in map[string]*understudy.Tensor) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := b.Run(context.Background(), in)
			checkDoubled(t, in, answer{out, err})
		}()
	}
	// No pile-up: two requests, two runs at once.
	run(rowsOf(1, 2, 0))
	run(rowsOf(1, 2, 10))
	started(t, d)
	started(t, d)
	// Two more wait behind them; the hand-over that finds them marks the
	// batcher busy.
	run(rowsOf(1, 2, 20))
	waitPending(t, b, 1)
	run(rowsOf(1, 2, 30))
	waitPending(t, b, 2)
	close(d.gate)
	wg.Wait()
	if got, want := d.rowsPerRun(), []int64{1, 1, 2}; !slices.Equal(got, want) {
		t.Fatalf("rows per run %v, want %v", got, want)
	}
	// Busy now: with one run in flight, the next request waits.
	d.gate = make(chan struct{})
	run(rowsOf(1, 2, 40))
	started(t, d)
	run(rowsOf(1, 2, 50))
	waitPending(t, b, 1)
	close(d.gate)
	wg.Wait()
	if got := d.rowsPerRun()[3:]; !slices.Equal(got, []int64{1, 1}) {
		t.Errorf("rows per run after the pile-up %v, want one run then the other", got)
	}
}

// started waits for the doubler to start a run.
func started(t *testing.T, d *doubler) {
	t.Helper()
	select {
	case <-d.started:
	case <-time.After(5 * time.Second):
		t.Fatal("no run started")
	}
}
