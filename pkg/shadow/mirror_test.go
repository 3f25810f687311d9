package shadow_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/understudy-ml/understudy/pkg/onnx"
	"github.com/understudy-ml/understudy/pkg/onnxbuild"
	"github.com/understudy-ml/understudy/pkg/registry"
	"github.com/understudy-ml/understudy/pkg/shadow"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

var rt *onnx.Runtime

func TestMain(m *testing.M) {
	lib := os.Getenv("UNDERSTUDY_ORT_LIB")
	if lib == "" {
		_, file, _, _ := runtime.Caller(0)
		lib = filepath.Join(filepath.Dir(file), "..", "..", ".ort", "1.30.0", "libonnxruntime.so")
	}
	var err error
	if rt, err = onnx.Open(lib); err != nil {
		panic(err)
	}
	code := m.Run()
	rt.Close()
	os.Exit(code)
}

// recorder is an in-memory Store that keeps what the mirror writes.
type recorder struct {
	mu         sync.Mutex
	results    []*understudy.ShadowResult
	sampledOut map[string]int64
	dropped    map[string]int64
}

func newRecorder() *recorder {
	return &recorder{sampledOut: map[string]int64{}, dropped: map[string]int64{}}
}

func (r *recorder) WritePrediction(*understudy.Prediction) {}
func (r *recorder) WriteShadowResult(res *understudy.ShadowResult) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.results = append(r.results, res)
}
func (r *recorder) CountSkips(s, _ string, _ time.Time, so, d int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sampledOut[s] += so
	r.dropped[s] += d
}
func (r *recorder) RecordModel(context.Context, understudy.ModelInfo) error { return nil }
func (r *recorder) SetLabels(context.Context, []understudy.Label) ([]understudy.Label, error) {
	return nil, nil
}
func (r *recorder) Flush(context.Context) error { return nil }
func (r *recorder) Close() error                { return nil }

func (r *recorder) byShadow() map[string][]*understudy.ShadowResult {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string][]*understudy.ShadowResult{}
	for _, res := range r.results {
		out[res.Shadow] = append(out[res.Shadow], res)
	}
	return out
}

// realModel loads an onnxbuild model into a registry model.
func realModel(tb testing.TB, name string, m *onnxbuild.Model, set registry.Settings) *registry.Model {
	tb.Helper()
	data, err := m.Marshal()
	if err != nil {
		tb.Fatal(err)
	}
	lm, err := rt.Load(data, onnx.Options{IntraOpThreads: 1})
	if err != nil {
		tb.Fatal(err)
	}
	rm := registry.NewModel(name, "v-"+name, lm.Signature, lm.Runner, set)
	tb.Cleanup(rm.Release)
	return rm
}

// acquireAll returns a shadows func over fixed models.
func acquireAll(models ...*registry.Model) func() []*registry.Model {
	return func() []*registry.Model {
		var out []*registry.Model
		for _, m := range models {
			if m.Acquire() {
				out = append(out, m)
			}
		}
		return out
	}
}

func prediction(tb testing.TB, primary *registry.Model, id string, x []float32) *understudy.Prediction {
	tb.Helper()
	in := map[string]*understudy.Tensor{"input": {DType: understudy.Float32, Shape: []int64{1, int64(len(x))}, Data: x}}
	out, err := primary.Runner.Run(context.Background(), in)
	if err != nil {
		tb.Fatal(err)
	}
	return &understudy.Prediction{ID: id, Time: time.Now(), Model: primary.Name, Version: primary.Version, Signature: &primary.Signature, Inputs: in, Outputs: out, Status: "ok"}
}

// Ensure sampling is reproducible from the request id and close to the rate.
func TestSampled(t *testing.T) {
	for _, rate := range []float64{0, 0.1, 0.5, 0.9, 1} {
		n := 0
		for i := range 20000 {
			id := "req-" + strconv.Itoa(i)
			got := shadow.Sampled(id, "s", rate)
			if got != shadow.Sampled(id, "s", rate) {
				t.Fatalf("sampling of %s is not reproducible", id)
			}
			if got {
				n++
			}
		}
		if share := float64(n) / 20000; math.Abs(share-rate) > 0.015 {
			t.Errorf("rate %v sampled %v of requests", rate, share)
		}
	}
}

// Ensure every mirrored request yields exactly one stored result per sampled
// shadow, or a counted drop, with the comparison computed against the primary.
func TestMirrorAccountsForEveryJob(t *testing.T) {
	d := onnxbuild.RandomMLP(1, 8, []int{16}, 3)
	primary := realModel(t, "primary", d.Model("p"), registry.Settings{})
	same := realModel(t, "same", d.Model("p"), registry.Settings{Sampling: 1, Timeout: time.Second})
	other := realModel(t, "other", onnxbuild.RandomMLP(2, 8, []int{16}, 3).Model("o"), registry.Settings{Sampling: 0.5, Timeout: time.Second})
	rec := newRecorder()
	// A tiny queue and one worker, so that a burst overflows it.
	m := shadow.New(shadow.Config{Workers: 1, QueueSize: 4, Nice: 10}, acquireAll(same, other), rec, nil, zerolog.Nop())
	const n = 300
	sampledOther := 0
	for i := range n {
		id := fmt.Sprintf("r%d", i)
		if shadow.Sampled(id, "other", 0.5) {
			sampledOther++
		}
		m.Submit(prediction(t, primary, id, []float32{float32(i), 1, 2, 3, 4, 5, 6, -float32(i)}), primary.Signature.Outputs)
	}
	if err := m.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := rec.byShadow()
	if total := len(got["same"]) + int(rec.dropped["same"]); total != n || rec.sampledOut["same"] != 0 {
		t.Errorf("same: %d results + %d dropped = %d, sampled out %d; want %d and 0", len(got["same"]), rec.dropped["same"], total, rec.sampledOut["same"], n)
	}
	if total := len(got["other"]) + int(rec.dropped["other"]); total != sampledOther || int(rec.sampledOut["other"]) != n-sampledOther {
		t.Errorf("other: %d results + %d dropped, %d sampled out; want %d mirrored, %d sampled out", len(got["other"]), rec.dropped["other"], rec.sampledOut["other"], sampledOther, n-sampledOther)
	}
	if rec.dropped["same"]+rec.dropped["other"] == 0 {
		t.Errorf("no drops with a queue of 4 and %d jobs; the test did not exercise overflow", n)
	}
	for _, res := range got["same"] {
		if res.Status != understudy.StatusOK || res.Compare.Agreement == nil || *res.Compare.Agreement != 1 || *res.Compare.MaxAbsDiff != 0 {
			t.Fatalf("identical shadow: %+v, want ok with agreement 1 and no difference", res)
		}
	}
	seen := map[string]bool{}
	for _, res := range got["other"] {
		if seen[res.RequestID] {
			t.Errorf("request %s stored twice for other", res.RequestID)
		}
		seen[res.RequestID] = true
		if !shadow.Sampled(res.RequestID, "other", 0.5) {
			t.Errorf("request %s reached other but is not in its sample", res.RequestID)
		}
	}
}

// Ensure a shadow that runs far past its timeout is terminated and recorded
// as a timeout, and Submit itself never waits for it.
func TestMirrorTimeout(t *testing.T) {
	d := onnxbuild.RandomMLP(1, 4, []int{4}, 3)
	primary := realModel(t, "primary", d.Model("p"), registry.Settings{})
	// Slow declares input "x"; wrap it so it takes the primary's "input".
	slow := realModel(t, "slow", renameInput(onnxbuild.Slow(3000), "input"), registry.Settings{Sampling: 1, Timeout: 30 * time.Millisecond})
	rec := newRecorder()
	m := shadow.New(shadow.Config{Workers: 1, QueueSize: 16}, acquireAll(slow), rec, nil, zerolog.Nop())
	p := prediction(t, primary, "t1", []float32{1, 2, 3, 4})
	start := time.Now()
	m.Submit(p, primary.Signature.Outputs)
	if took := time.Since(start); took > 5*time.Millisecond {
		t.Errorf("Submit took %v; it must not wait for the shadow", took)
	}
	if err := m.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	res := rec.byShadow()["slow"]
	if len(res) != 1 || res[0].Status != understudy.StatusTimeout {
		t.Fatalf("results = %+v, want one timeout", res)
	}
	if res[0].Latency > time.Second {
		t.Errorf("timed-out run took %v, want it stopped near 30ms", res[0].Latency)
	}
}

// panicky is a runner that panics, or fails, on every input.
type panicky struct{ panics bool }

func (p panicky) Run(context.Context, map[string]*understudy.Tensor) (map[string]*understudy.Tensor, error) {
	if p.panics {
		panic("boom")
	}
	return nil, errors.New("always fails")
}
func (panicky) Close() error { return nil }

// Ensure errors and panics in a shadow are recorded and the worker lives on.
func TestMirrorRecoversPanics(t *testing.T) {
	d := onnxbuild.RandomMLP(1, 4, []int{4}, 3)
	primary := realModel(t, "primary", d.Model("p"), registry.Settings{})
	set := registry.Settings{Sampling: 1, Timeout: time.Second}
	boom := registry.NewModel("boom", "v1", primary.Signature, panicky{panics: true}, set)
	fails := registry.NewModel("fails", "v1", primary.Signature, panicky{}, set)
	rec := newRecorder()
	m := shadow.New(shadow.Config{Workers: 1, QueueSize: 64}, acquireAll(boom, fails), rec, nil, zerolog.Nop())
	for i := range 10 {
		m.Submit(prediction(t, primary, fmt.Sprint(i), []float32{1, 2, 3, 4}), primary.Signature.Outputs)
	}
	m.Close(context.Background())
	got := rec.byShadow()
	if len(got["boom"]) != 10 || len(got["fails"]) != 10 {
		t.Fatalf("got %d boom and %d fails results, want 10 each", len(got["boom"]), len(got["fails"]))
	}
	for _, res := range append(got["boom"], got["fails"]...) {
		if res.Status != understudy.StatusError || res.Error == "" {
			t.Errorf("result %+v, want an error status with the message", res)
		}
	}
	if !strings.Contains(got["boom"][0].Error, "panicked: boom") {
		t.Errorf("panic error = %q", got["boom"][0].Error)
	}
}

// Ensure shadow workers can run in the SCHED_IDLE class, which only gets
// CPU time nothing else wants.
func TestWorkersAreIdleClass(t *testing.T) {
	m := shadow.New(shadow.Config{Workers: 2, QueueSize: 1, Idle: true}, acquireAll(), nil, nil, zerolog.Nop())
	defer m.Close(context.Background())
	for _, tid := range m.WorkerTIDs() {
		attr, err := unix.SchedGetAttr(tid, 0)
		if err != nil {
			t.Fatal(err)
		}
		if attr.Policy != unix.SCHED_IDLE {
			t.Errorf("thread %d policy = %d, want SCHED_IDLE (%d)", tid, attr.Policy, unix.SCHED_IDLE)
		}
	}
	// The test goroutine's own thread keeps the normal policy.
	if attr, _ := unix.SchedGetAttr(0, 0); attr.Policy == unix.SCHED_IDLE {
		t.Error("the calling thread was moved to SCHED_IDLE too")
	}
}

// Ensure shadow workers run on threads with a lower scheduling priority.
func TestWorkersAreNiced(t *testing.T) {
	m := shadow.New(shadow.Config{Workers: 2, QueueSize: 1, Nice: 10}, acquireAll(), nil, nil, zerolog.Nop())
	defer m.Close(context.Background())
	tids := m.WorkerTIDs()
	if len(tids) != 2 {
		t.Fatalf("got %d worker threads, want 2", len(tids))
	}
	for _, tid := range tids {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/stat", tid))
		if err != nil {
			t.Fatal(err)
		}
		// Field 19 is the nice value; fields after the ")" of the command.
		fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
		if nice := fields[16]; nice != "10" {
			t.Errorf("thread %d nice = %s, want 10", tid, nice)
		}
	}
}

// Ensure Close with an expired deadline records what could not run as
// dropped instead of losing it.
func TestCloseDeadlineDrops(t *testing.T) {
	d := onnxbuild.RandomMLP(1, 4, []int{4}, 3)
	primary := realModel(t, "primary", d.Model("p"), registry.Settings{})
	slow := realModel(t, "slow", renameInput(onnxbuild.Slow(300), "input"), registry.Settings{Sampling: 1, Timeout: 10 * time.Second})
	rec := newRecorder()
	m := shadow.New(shadow.Config{Workers: 1, QueueSize: 64}, acquireAll(slow), rec, nil, zerolog.Nop())
	for i := range 20 {
		m.Submit(prediction(t, primary, fmt.Sprint(i), []float32{1, 2, 3, 4}), primary.Signature.Outputs)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := m.Close(ctx); err == nil {
		t.Log("queue drained before the deadline; machine faster than expected")
	}
	got := len(rec.byShadow()["slow"]) + int(rec.dropped["slow"])
	if got != 20 {
		t.Errorf("%d results + %d dropped = %d, want 20", len(rec.byShadow()["slow"]), rec.dropped["slow"], got)
	}
	if rec.dropped["slow"] == 0 {
		t.Errorf("nothing dropped at a 20ms deadline with 20 slow jobs")
	}
}

// renameInput renames a model's graph input so it accepts another model's
// inputs; the slow model declares "x".
func renameInput(m *onnxbuild.Model, name string) *onnxbuild.Model {
	old := m.Graph.Inputs[0].Name
	m.Graph.Inputs[0].Name = name
	for i := range m.Graph.Nodes {
		for j, in := range m.Graph.Nodes[i].Inputs {
			if in == old {
				m.Graph.Nodes[i].Inputs[j] = name
			}
		}
	}
	return m
}

// Ensure idle workers stop polling: after a quiet spell they sleep until a
// job arrives, so an idle server uses no CPU, and the first job still runs.
func TestIdleWorkersPark(t *testing.T) {
	d := onnxbuild.RandomMLP(1, 8, []int{16}, 3)
	primary := realModel(t, "primary", d.Model("p"), registry.Settings{})
	same := realModel(t, "same", d.Model("p"), registry.Settings{Sampling: 1, Timeout: time.Second})
	rec := newRecorder()
	m := shadow.New(shadow.Config{Workers: 2, QueueSize: 4}, acquireAll(same), rec, nil, zerolog.Nop())
	defer m.Close(context.Background())
	switches := func() (n int64) {
		for _, tid := range m.WorkerTIDs() {
			status, err := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/status", tid))
			if err != nil {
				t.Fatal(err)
			}
			for _, line := range strings.Split(string(status), "\n") {
				if v, ok := strings.CutPrefix(line, "voluntary_ctxt_switches:"); ok {
					k, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
					n += k
				}
			}
		}
		return n
	}
	// Polling, two workers would sleep and wake about 400 times in 200ms.
	time.Sleep(300 * time.Millisecond)
	before := switches()
	time.Sleep(200 * time.Millisecond)
	if woke := switches() - before; woke > 20 {
		t.Errorf("idle workers woke %d times in 200ms; want them parked", woke)
	}
	m.Submit(prediction(t, primary, "after-quiet", []float32{1, 2, 3, 4, 5, 6, 7, 8}), primary.Signature.Outputs)
	if err := m.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := rec.byShadow()["same"]; len(got) != 1 || got[0].RequestID != "after-quiet" {
		t.Errorf("after a quiet spell: results %+v, want the one job", got)
	}
}
