package onnx_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/understudy-ml/understudy/pkg/onnx"
	"github.com/understudy-ml/understudy/pkg/onnxbuild"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

var rt *onnx.Runtime

func TestMain(m *testing.M) {
	var err error
	if rt, err = onnx.Open(LibPath()); err != nil {
		panic(err)
	}
	code := m.Run()
	if err := rt.Close(); err != nil {
		panic(err)
	}
	os.Exit(code)
}

// LibPath finds the library that scripts/fetch-ort.sh fetched; make test
// passes it in UNDERSTUDY_ORT_LIB.
func LibPath() string {
	if p := os.Getenv("UNDERSTUDY_ORT_LIB"); p != "" {
		return p
	}
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", ".ort", "1.30.0", "libonnxruntime.so")
}

func load(tb testing.TB, m *onnxbuild.Model) *understudy.LoadedModel {
	tb.Helper()
	data, err := m.Marshal()
	if err != nil {
		tb.Fatalf("marshal: %v", err)
	}
	lm, err := rt.Load(data, onnx.Options{IntraOpThreads: 1})
	if err != nil {
		tb.Fatalf("load: %v", err)
	}
	tb.Cleanup(func() {
		if err := lm.Runner.Close(); err != nil {
			tb.Errorf("close: %v", err)
		}
	})
	return lm
}

func run(tb testing.TB, lm *understudy.LoadedModel, in map[string]*understudy.Tensor) map[string]*understudy.Tensor {
	tb.Helper()
	out, err := lm.Runner.Run(context.Background(), in)
	if err != nil {
		tb.Fatalf("run: %v", err)
	}
	return out
}

// Ensure the signature and metadata are read at load, with -1 for dynamic
// dimensions and a rank-0 output as empty dims.
func TestLoadSignature(t *testing.T) {
	lm := load(t, onnxbuild.MultiIO())
	want := understudy.Signature{
		Inputs: []understudy.TensorInfo{
			{Name: "a", DType: understudy.Float32, Dims: []int64{-1, 3}},
			{Name: "b", DType: understudy.Int64, Dims: []int64{-1, 2}},
		},
		Outputs: []understudy.TensorInfo{
			{Name: "sum", DType: understudy.Float32, Dims: []int64{-1, 3}},
			{Name: "b_doubled", DType: understudy.Int64, Dims: []int64{-1, 2}},
			{Name: "total", DType: understudy.Float32, Dims: []int64{}},
		},
	}
	if !reflect.DeepEqual(lm.Signature, want) {
		t.Errorf("signature = %+v, want %+v", lm.Signature, want)
	}
	if got, want := lm.Metadata.Producer, onnxbuild.Producer; got != want {
		t.Errorf("producer = %q, want %q", got, want)
	}
}

// Ensure several inputs and outputs, and a rank-0 output, come back with
// the values computed in Go.
func TestRunMultiIO(t *testing.T) {
	lm := load(t, onnxbuild.MultiIO())
	a := []float32{1, 2, 3, -4, 5.5, 6}
	out := run(t, lm, map[string]*understudy.Tensor{
		"a": {DType: understudy.Float32, Shape: []int64{2, 3}, Data: a},
		"b": {DType: understudy.Int64, Shape: []int64{2, 2}, Data: []int64{1, -2, 3, 1 << 40}},
	})
	if got, want := out["sum"].Data, []float32{2, 4, 6, -8, 11, 12}; !reflect.DeepEqual(got, want) {
		t.Errorf("sum = %v, want %v", got, want)
	}
	if got, want := out["b_doubled"].Data, []int64{2, -4, 6, 1 << 41}; !reflect.DeepEqual(got, want) {
		t.Errorf("b_doubled = %v, want %v", got, want)
	}
	var total float32
	for _, v := range a {
		total += v
	}
	if got := out["total"]; len(got.Shape) != 0 || !reflect.DeepEqual(got.Data, []float32{total}) {
		t.Errorf("total = shape %v data %v, want rank 0 [%v]", got.Shape, got.Data, total)
	}
}

// Ensure every supported element type goes in and comes out unchanged, for
// batches of several sizes on a dynamic batch dimension.
func TestRunIdentityAllTypes(t *testing.T) {
	data := map[understudy.DType]func(n int) any{
		understudy.Float32: func(n int) any { return fill(n, func(i int) float32 { return float32(i) * 1.5 }) },
		understudy.Float64: func(n int) any { return fill(n, func(i int) float64 { return float64(i) / 3 }) },
		understudy.Float16: func(n int) any {
			return fill(n, func(i int) uint16 { return understudy.Float32ToHalf(float32(i) - 0.5) })
		},
		understudy.Int8:   func(n int) any { return fill(n, func(i int) int8 { return int8(-i) }) },
		understudy.Uint8:  func(n int) any { return fill(n, func(i int) uint8 { return uint8(250 + i%5) }) },
		understudy.Int16:  func(n int) any { return fill(n, func(i int) int16 { return int16(-300 * i) }) },
		understudy.Uint16: func(n int) any { return fill(n, func(i int) uint16 { return uint16(60000 + i) }) },
		understudy.Int32:  func(n int) any { return fill(n, func(i int) int32 { return int32(-70000 * i) }) },
		understudy.Uint32: func(n int) any { return fill(n, func(i int) uint32 { return uint32(4e9) + uint32(i) }) },
		understudy.Int64:  func(n int) any { return fill(n, func(i int) int64 { return -1<<60 + int64(i) }) },
		understudy.Uint64: func(n int) any { return fill(n, func(i int) uint64 { return 1<<63 + uint64(i) }) },
		understudy.Bool:   func(n int) any { return fill(n, func(i int) bool { return i%3 == 0 }) },
		understudy.String: func(n int) any { return fill(n, func(i int) string { return strings.Repeat("é", i) }) },
	}
	for dt, gen := range data {
		t.Run(dt.String(), func(t *testing.T) {
			lm := load(t, onnxbuild.Identity(onnxbuild.DType(dt), []int64{-1, 3}))
			if got := lm.Signature.Outputs[0].DType; got != dt {
				t.Fatalf("output type = %v, want %v", got, dt)
			}
			for _, batch := range []int{1, 4, 33} {
				in := &understudy.Tensor{DType: dt, Shape: []int64{int64(batch), 3}, Data: gen(batch * 3)}
				out := run(t, lm, map[string]*understudy.Tensor{"x": in})["y"]
				if !reflect.DeepEqual(out.Shape, in.Shape) || !reflect.DeepEqual(out.Data, in.Data) {
					t.Errorf("batch %d: got shape %v data %v, want %v %v", batch, out.Shape, out.Data, in.Shape, in.Data)
				}
			}
		})
	}
}

// Ensure computed (not echoed) values are right for signed and float types.
func TestRunNeg(t *testing.T) {
	lm := load(t, onnxbuild.Neg(onnxbuild.Float16))
	in := []uint16{understudy.Float32ToHalf(1.5), understudy.Float32ToHalf(-2), 0}
	out := run(t, lm, map[string]*understudy.Tensor{"x": {DType: understudy.Float16, Shape: []int64{1, 3}, Data: in}})["y"]
	got := out.Float64s()
	if want := []float64{-1.5, 2, 0}; !reflect.DeepEqual(got, want) {
		t.Errorf("float16 neg = %v, want %v", got, want)
	}
	lm = load(t, onnxbuild.Neg(onnxbuild.Int16))
	out = run(t, lm, map[string]*understudy.Tensor{"x": {DType: understudy.Int16, Shape: []int64{1, 3}, Data: []int16{7, -32767, 0}}})["y"]
	if want := []int16{-7, 32767, 0}; !reflect.DeepEqual(out.Data, want) {
		t.Errorf("int16 neg = %v, want %v", out.Data, want)
	}
}

// Ensure an MLP's outputs match the same network evaluated in Go.
func TestRunMLPMatchesGo(t *testing.T) {
	d := onnxbuild.RandomMLP(7, 16, []int{32}, 5)
	lm := load(t, d.Model("mlp"))
	rows := make([][]float32, 9)
	flat := make([]float32, 0, 9*16)
	for i := range rows {
		rows[i] = make([]float32, 16)
		for j := range rows[i] {
			rows[i][j] = float32(math.Sin(float64(i*16+j))) * 2
		}
		flat = append(flat, rows[i]...)
	}
	wantLabels, wantProbs := d.Predict(rows)
	out := run(t, lm, map[string]*understudy.Tensor{"input": {DType: understudy.Float32, Shape: []int64{9, 16}, Data: flat}})
	if got := out["label"].Data; !reflect.DeepEqual(got, wantLabels) {
		t.Errorf("labels = %v, want %v", got, wantLabels)
	}
	probs := out["probabilities"].Data.([]float32)
	for i, row := range wantProbs {
		for j, p := range row {
			if g := probs[i*5+j]; math.Abs(float64(g-p)) > 1e-5 {
				t.Errorf("probabilities[%d][%d] = %v, want %v", i, j, g, p)
			}
		}
	}
}

// Ensure a run is terminated through RunOptions when its context ends, and
// the session keeps working afterwards.
func TestRunTerminatedByContext(t *testing.T) {
	lm := load(t, onnxbuild.Slow(1000))
	in := map[string]*understudy.Tensor{"x": {DType: understudy.Float32, Shape: []int64{64, 4}, Data: make([]float32, 256)}}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := lm.Runner.Run(ctx, in)
	took := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want context.DeadlineExceeded", err)
	}
	if took > 2*time.Second {
		t.Errorf("terminated run took %v; it should stop soon after the 50ms deadline", took)
	}
	// The terminated RunOptions is reused only after its flag is reset: a
	// later run on the same session with a live context completes.
	one := map[string]*understudy.Tensor{"x": {DType: understudy.Float32, Shape: []int64{1, 4}, Data: []float32{1, 2, 3, 4}}}
	for range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		out, err := lm.Runner.Run(ctx, one)
		cancel()
		if err != nil || !reflect.DeepEqual(out["y"].Data, []float32{1, 2, 3, 4}) {
			t.Fatalf("run after a terminated one: %v, %v", out, err)
		}
	}
	// Still usable, and the slow model returns its input unchanged.
	small := load(t, onnxbuild.Slow(3))
	x := []float32{1, 2, 3, 4}
	out := run(t, small, map[string]*understudy.Tensor{"x": {DType: understudy.Float32, Shape: []int64{1, 4}, Data: x}})
	if !reflect.DeepEqual(out["y"].Data, x) {
		t.Errorf("slow(3) = %v, want %v", out["y"].Data, x)
	}
}

// Ensure one session serves many goroutines at once.
func TestRunConcurrent(t *testing.T) {
	d := onnxbuild.RandomMLP(3, 8, []int{16}, 3)
	lm := load(t, d.Model("mlp"))
	concurrently(t, 8, func(g int) error {
		row := fill(8, func(i int) float32 { return float32(g*i) / 10 })
		want, _ := d.Predict([][]float32{row})
		for range 200 {
			out, err := lm.Runner.Run(context.Background(), map[string]*understudy.Tensor{"input": {DType: understudy.Float32, Shape: []int64{1, 8}, Data: row}})
			if err != nil {
				return err
			}
			if !reflect.DeepEqual(out["label"].Data, want) {
				return errors.New("wrong label under concurrency")
			}
		}
		return nil
	})
}

// concurrently runs f in n goroutines, numbered from 0, and fails the test
// with every error they return.
func concurrently(t *testing.T, n int, f func(g int) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for g := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(g); err != nil {
				errs <- fmt.Errorf("goroutine %d: %w", g, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// Ensure files that are not usable models fail to load with an error, and
// never crash the process.
func TestLoadRejects(t *testing.T) {
	good, err := onnxbuild.MultiIO().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	zipmap, err := onnxbuild.ZipMap().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "empty"},
		{"text", []byte("this is not an onnx model\n"), ""},
		{"truncated", good[:len(good)/2], ""},
		{"zipmap", zipmap, "ZipMap"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lm, err := rt.Load(tt.data, onnx.Options{})
			if err == nil {
				lm.Runner.Close()
				t.Fatal("load succeeded, want an error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}

// Ensure asking for CUDA with a CPU-only library fails up front and says
// what is missing and how to run on CPU.
func TestCUDAUnavailable(t *testing.T) {
	dev, err := onnx.ParseDevice("cuda:1")
	if err != nil || !dev.CUDA || dev.ID != 1 {
		t.Fatalf("ParseDevice(cuda:1) = %+v, %v", dev, err)
	}
	err = rt.CheckDevice(dev)
	if !errors.Is(err, onnx.ErrCUDAUnavailable) {
		t.Fatalf("CheckDevice = %v, want ErrCUDAUnavailable", err)
	}
	for _, want := range []string{"libonnxruntime_providers_cuda.so", "cuDNN", "--device cpu"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	for _, bad := range []string{"gpu", "cuda:x", "cuda:-1"} {
		if _, err := onnx.ParseDevice(bad); err == nil {
			t.Errorf("ParseDevice(%q) succeeded, want an error", bad)
		}
	}
}

func fill[T any](n int, f func(int) T) []T {
	out := make([]T, n)
	for i := range out {
		out[i] = f(i)
	}
	return out
}

// Ensure an output whose signature does not tell its size still comes back
// whole: the first run with outputs sized from the signature fails inside
// ONNX Runtime, is run again with ORT sizing them, and later runs are right
// from the start. The batch changes between runs, as with real traffic.
func TestOutputSizedDifferentlyFromSignature(t *testing.T) {
	lm := load(t, onnxbuild.DoubledRows())
	for _, rows := range []int{1, 2, 3, 1} {
		x := make([]float32, 3*rows)
		for i := range x {
			x[i] = float32(i) + 0.5
		}
		out := run(t, lm, map[string]*understudy.Tensor{"x": {DType: understudy.Float32, Shape: []int64{int64(rows), 3}, Data: x}})
		y := out["y"]
		want := append(slices.Clone(x), x...)
		if !slices.Equal(y.Shape, []int64{int64(2 * rows), 3}) || !slices.Equal(y.Data.([]float32), want) {
			t.Fatalf("%d rows: y = %v %v, want [%d 3] %v", rows, y.Shape, y.Data, 2*rows, want)
		}
	}
}

// Ensure outputs written into Go memory sized before the run are the
// model's answers for every batch size, and do not share memory between
// runs.
func TestPresizedOutputsAreFresh(t *testing.T) {
	lm := load(t, onnxbuild.Neg(onnxbuild.Float))
	var kept []*understudy.Tensor
	for rows := 1; rows <= 3; rows++ {
		x := make([]float32, 3*rows)
		for i := range x {
			x[i] = float32(rows*10 + i)
		}
		y := run(t, lm, map[string]*understudy.Tensor{"x": {DType: understudy.Float32, Shape: []int64{int64(rows), 3}, Data: x}})["y"]
		kept = append(kept, y)
	}
	for k, y := range kept {
		rows := k + 1
		got := y.Data.([]float32)
		if len(got) != 3*rows || !slices.Equal(y.Shape, []int64{int64(rows), 3}) {
			t.Fatalf("run %d: shape %v with %d values", rows, y.Shape, len(got))
		}
		for i, v := range got {
			if v != -float32(rows*10+i) {
				t.Fatalf("run %d: y[%d] = %v, want %v (overwritten by a later run?)", rows, i, v, -float32(rows*10+i))
			}
		}
	}
}

// Ensure a model with a rank-0 input or output of any type either serves it
// or is refused at load with a message naming the tensor: a model that loads
// must never fail every request.
func TestRankZeroEveryType(t *testing.T) {
	one := map[understudy.DType]any{
		understudy.Float32: []float32{1.5},
		understudy.Float64: []float64{-2.25},
		understudy.Float16: []uint16{understudy.Float32ToHalf(0.5)},
		understudy.Int8:    []int8{-7},
		understudy.Uint8:   []uint8{200},
		understudy.Int16:   []int16{-300},
		understudy.Uint16:  []uint16{60000},
		understudy.Int32:   []int32{-70000},
		understudy.Uint32:  []uint32{4e9},
		understudy.Int64:   []int64{-1 << 60},
		understudy.Uint64:  []uint64{1 << 63},
		understudy.Bool:    []bool{true},
		understudy.String:  []string{"é"},
	}
	// reshape maps x to y of another rank, so that only one side is rank 0.
	reshape := func(dt onnxbuild.DType, in, out onnxbuild.ValueInfo, to []int64) *onnxbuild.Model {
		shape := onnxbuild.Int64Tensor("shape", []int64{int64(len(to))}, to)
		return &onnxbuild.Model{ProducerName: onnxbuild.Producer, Graph: onnxbuild.Graph{
			Name:         "reshape_" + dt.String(),
			Nodes:        []onnxbuild.Node{{Name: "r", OpType: "Reshape", Inputs: []string{"x", "shape"}, Outputs: []string{"y"}}},
			Inputs:       []onnxbuild.ValueInfo{in},
			Outputs:      []onnxbuild.ValueInfo{out},
			Initializers: []onnxbuild.Tensor{shape},
		}}
	}
	for dt, data := range one {
		odt := onnxbuild.DType(dt)
		scalar := func(name string) onnxbuild.ValueInfo {
			return onnxbuild.ValueInfo{Name: name, DType: odt, Scalar: true}
		}
		vector := func(name string) onnxbuild.ValueInfo {
			return onnxbuild.ValueInfo{Name: name, DType: odt, Dims: []int64{1}}
		}
		models := []struct {
			name        string
			m           *onnxbuild.Model
			inShape     []int64
			outShape    []int64
			rank0Tensor string
		}{
			{"input", reshape(odt, scalar("x"), vector("y"), []int64{1}), []int64{}, []int64{1}, `input "x"`},
			{"output", reshape(odt, vector("x"), scalar("y"), []int64{}), []int64{1}, []int64{}, `output "y"`},
		}
		for _, tt := range models {
			t.Run(dt.String()+"/"+tt.name, func(t *testing.T) {
				b, err := tt.m.Marshal()
				if err != nil {
					t.Fatal(err)
				}
				lm, err := rt.Load(b, onnx.Options{IntraOpThreads: 1})
				if err != nil {
					if msg := err.Error(); !strings.Contains(msg, tt.rank0Tensor) || !strings.Contains(msg, "rank-0 "+dt.String()) {
						t.Fatalf("load error %q does not name the rank-0 %v %s", msg, dt, tt.rank0Tensor)
					}
					return
				}
				defer lm.Runner.Close()
				in := &understudy.Tensor{DType: dt, Shape: tt.inShape, Data: data}
				out, err := lm.Runner.Run(context.Background(), map[string]*understudy.Tensor{"x": in})
				if err != nil {
					t.Fatalf("the model loaded, but every run fails: %v", err)
				}
				if y := out["y"]; !slices.Equal(y.Shape, tt.outShape) || !reflect.DeepEqual(y.Data, data) {
					t.Errorf("y = shape %v data %v, want %v %v", y.Shape, y.Data, tt.outShape, data)
				}
			})
		}
	}
}
