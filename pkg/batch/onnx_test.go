package batch_test

import (
	"context"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/understudy-ml/understudy/pkg/batch"
	"github.com/understudy-ml/understudy/pkg/onnx"
	"github.com/understudy-ml/understudy/pkg/onnxbuild"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

func runtimeForTest(t *testing.T) *onnx.Runtime {
	t.Helper()
	lib := os.Getenv("UNDERSTUDY_ORT_LIB")
	if lib == "" {
		_, file, _, _ := runtime.Caller(0)
		lib = filepath.Join(filepath.Dir(file), "..", "..", ".ort", "1.30.0", "libonnxruntime.so")
	}
	rt, err := onnx.Open(lib)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	return rt
}

func loadModel(t *testing.T, rt *onnx.Runtime, m *onnxbuild.Model) *understudy.LoadedModel {
	t.Helper()
	data, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	lm, err := rt.Load(data, onnx.Options{IntraOpThreads: 1})
	if err != nil {
		t.Fatal(err)
	}
	return lm
}

// slowRunner makes each run of a real model take at least a millisecond.
// This MLP runs in microseconds: on a busy machine, or with one P, each
// client goroutine could finish its request before the next one asked, and
// nothing would ever wait to be merged (CI once saw 0 merged runs of 480).
type slowRunner struct{ understudy.Runner }

func (r slowRunner) Run(ctx context.Context, in map[string]*understudy.Tensor) (map[string]*understudy.Tensor, error) {
	time.Sleep(time.Millisecond)
	return r.Runner.Run(ctx, in)
}

// TestMergedRunsAnswerEachRequestAsItsOwnRun sends many concurrent requests
// of 1–3 rows to a real MLP through a batcher with one slot, slowed so that
// most of them wait and are merged, and checks every answer against the
// network evaluated in Go.
func TestMergedRunsAnswerEachRequestAsItsOwnRun(t *testing.T) {
	rt := runtimeForTest(t)
	net := onnxbuild.RandomMLP(7, 16, []int{64, 64}, 5)
	lm := loadModel(t, rt, net.Model("mlp"))
	b, err := batch.New(slowRunner{lm.Runner}, lm.Signature, batch.Options{MaxRows: 8, Slots: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	const clients, each = 8, 60
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(c), 1))
			for range each {
				rows := make([][]float32, 1+r.IntN(3))
				flat := []float32{}
				for i := range rows {
					rows[i] = make([]float32, net.Inputs())
					for j := range rows[i] {
						rows[i][j] = float32(r.NormFloat64())
					}
					flat = append(flat, rows[i]...)
				}
				in := map[string]*understudy.Tensor{"input": {DType: understudy.Float32, Shape: []int64{int64(len(rows)), int64(net.Inputs())}, Data: flat}}
				out, err := b.Run(context.Background(), in)
				if err != nil {
					t.Error(err)
					return
				}
				labels, probs := net.Predict(rows)
				gotLabels := out["label"].Data.([]int64)
				gotProbs := out["probabilities"].Data.([]float32)
				if len(gotLabels) != len(rows) || len(gotProbs) != len(rows)*net.Classes() {
					t.Errorf("got %d labels and %d probabilities for %d rows", len(gotLabels), len(gotProbs), len(rows))
					return
				}
				for i := range rows {
					for k := range net.Classes() {
						if d := math.Abs(float64(gotProbs[i*net.Classes()+k] - probs[i][k])); d > 1e-5 {
							t.Errorf("row %d class %d: probability off by %g", i, k, d)
							return
						}
					}
					if gotLabels[i] != labels[i] {
						t.Errorf("row %d: label %d, want %d", i, gotLabels[i], labels[i])
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	s := b.Stats()
	t.Logf("%d merged runs answered %d of %d requests", s.Runs, s.Requests, clients*each)
	// While one run sleeps, the other seven clients ask; most requests
	// must have been merged, up to 8 rows at a time.
	if s.Runs == 0 || s.Requests < clients*each/2 {
		t.Errorf("stats %+v: with 8 clients and one slot, most requests should have been merged", s)
	}
}

// TestAModelWithoutOneRowPerRowIsCaught uses a real model whose output has
// twice the rows of its input, though its signature says [-1,3]: merging
// must switch itself off and every request still get its own run's answer.
func TestAModelWithoutOneRowPerRowIsCaught(t *testing.T) {
	rt := runtimeForTest(t)
	lm := loadModel(t, rt, onnxbuild.DoubledRows())
	var disabled []string
	var mu sync.Mutex
	b, err := batch.New(slowRunner{lm.Runner}, lm.Signature, batch.Options{MaxRows: 8, Slots: 1, OnDisable: func(r string) {
		mu.Lock()
		disabled = append(disabled, r)
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var wg sync.WaitGroup
	for c := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				v := float32(c*1000 + i)
				in := map[string]*understudy.Tensor{"x": {DType: understudy.Float32, Shape: []int64{1, 3}, Data: []float32{v, v + 1, v + 2}}}
				out, err := b.Run(context.Background(), in)
				if err != nil {
					t.Error(err)
					return
				}
				y := out["y"]
				want := []float32{v, v + 1, v + 2, v, v + 1, v + 2}
				if y.Shape[0] != 2 || !equal(y.Data.([]float32), want) {
					t.Errorf("got %v %v, want [2 3] %v", y.Shape, y.Data, want)
					return
				}
			}
		}()
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(disabled) != 1 || !strings.Contains(disabled[0], `output "y" had shape`) {
		t.Fatalf("OnDisable calls %q; want one naming the output", disabled)
	}
	if s := b.Stats(); s.Runs != 0 || s.Disabled == "" {
		t.Errorf("stats %+v, want no merged run counted and the reason kept", s)
	}
}

func equal(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
