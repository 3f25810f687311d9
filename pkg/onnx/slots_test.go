package onnx_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/understudy-ml/understudy/pkg/onnx"
	"github.com/understudy-ml/understudy/pkg/onnxbuild"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// negInput is rows × 3 values that differ for every seed.
func negInput(seed, rows int) *understudy.Tensor {
	x := make([]float32, 3*rows)
	for i := range x {
		x[i] = float32(seed*1000+i) + 0.25
	}
	return &understudy.Tensor{DType: understudy.Float32, Shape: []int64{int64(rows), 3}, Data: x}
}

func checkNeg(in, out *understudy.Tensor) error {
	x, y := in.Data.([]float32), out.Data.([]float32)
	if !slices.Equal(out.Shape, in.Shape) || len(y) != len(x) {
		return fmt.Errorf("shape %v with %d values, want %v", out.Shape, len(y), in.Shape)
	}
	for i := range x {
		if y[i] != -x[i] {
			return fmt.Errorf("y[%d] = %v, want %v", i, y[i], -x[i])
		}
	}
	return nil
}

// Ensure runs through reused values (slots) answer each run's own inputs,
// and that an answer handed out is never overwritten by a later run of the
// same batch size: every answer is checked after all the runs. Batches past
// the slots' limit take the path without them, in the same sequence.
func TestSlotsKeepEveryAnswer(t *testing.T) {
	lm := load(t, onnxbuild.Neg(onnxbuild.Float))
	type pair struct{ in, out *understudy.Tensor }
	var kept []pair
	for k := range 60 {
		in := negInput(k, 1+k%10)
		kept = append(kept, pair{in, run(t, lm, map[string]*understudy.Tensor{"x": in})["y"]})
	}
	for k, p := range kept {
		if err := checkNeg(p.in, p.out); err != nil {
			t.Errorf("run %d (%d rows): %v", k, p.in.Shape[0], err)
		}
	}
	// Runs one after another reuse one slot per batch size, rather than
	// creating one each time.
	for rows := 1; rows <= 8; rows++ {
		if n := onnx.IdleSlots(lm.Runner, rows); n != 1 {
			t.Errorf("%d idle slots for %d rows after runs one at a time, want 1", n, rows)
		}
	}
	if n := onnx.IdleSlots(lm.Runner, 9); n != 0 {
		t.Errorf("%d idle slots for 9 rows, past the limit; want 0", n)
	}
}

// Ensure concurrent runs through slots never see each other's inputs or
// answers.
func TestSlotsConcurrent(t *testing.T) {
	lm := load(t, onnxbuild.Neg(onnxbuild.Float))
	concurrently(t, 8, func(g int) error {
		for k := range 300 {
			in := negInput(g*1000+k, 1+k%2)
			out, err := lm.Runner.Run(context.Background(), map[string]*understudy.Tensor{"x": in})
			if err == nil {
				err = checkNeg(in, out["y"])
			}
			if err != nil {
				return fmt.Errorf("run %d: %w", k, err)
			}
		}
		return nil
	})
}

// Ensure inputs whose batches disagree neither fit a slot nor presize: the
// run goes to ONNX Runtime as given, which answers each output at its own
// input's batch, and the runs after it are right and still use slots.
func TestSlotsRefuseMismatchedShapes(t *testing.T) {
	lm := load(t, &onnxbuild.Model{Graph: onnxbuild.Graph{
		Name: "independent",
		Nodes: []onnxbuild.Node{
			{Name: "y", OpType: "Neg", Inputs: []string{"a"}, Outputs: []string{"y"}},
			{Name: "z", OpType: "Neg", Inputs: []string{"b"}, Outputs: []string{"z"}},
		},
		Inputs:  []onnxbuild.ValueInfo{{Name: "a", DType: onnxbuild.Float, Dims: []int64{-1, 3}}, {Name: "b", DType: onnxbuild.Int64, Dims: []int64{-1, 2}}},
		Outputs: []onnxbuild.ValueInfo{{Name: "y", DType: onnxbuild.Float, Dims: []int64{-1, 3}}, {Name: "z", DType: onnxbuild.Int64, Dims: []int64{-1, 2}}},
	}})
	for k, in := range []map[string]*understudy.Tensor{{
		"a": {DType: understudy.Float32, Shape: []int64{1, 3}, Data: []float32{1, 2, 3}},
		"b": {DType: understudy.Int64, Shape: []int64{2, 2}, Data: []int64{1, 2, 3, 4}},
	}, {
		"a": {DType: understudy.Float32, Shape: []int64{1, 3}, Data: []float32{4, 5, 6}},
		"b": {DType: understudy.Int64, Shape: []int64{1, 2}, Data: []int64{5, 6}},
	}} {
		out := run(t, lm, in)
		a, b := in["a"].Data.([]float32), in["b"].Data.([]int64)
		var wantY []float32
		for _, v := range a {
			wantY = append(wantY, -v)
		}
		var wantZ []int64
		for _, v := range b {
			wantZ = append(wantZ, -v)
		}
		if got := out["y"]; !slices.Equal(got.Data.([]float32), wantY) || !slices.Equal(got.Shape, in["a"].Shape) {
			t.Errorf("request %d: y = %v %v, want %v %v", k, got.Shape, got.Data, in["a"].Shape, wantY)
		}
		if got := out["z"]; !slices.Equal(got.Data.([]int64), wantZ) || !slices.Equal(got.Shape, in["b"].Shape) {
			t.Errorf("request %d: z = %v %v, want %v %v", k, got.Shape, got.Data, in["b"].Shape, wantZ)
		}
	}
	// The request with two batches did not turn presizing, and so slots,
	// off for the requests after it; the second request used a slot.
	if !onnx.Presizing(lm.Runner) || onnx.IdleSlots(lm.Runner, 1) != 1 {
		t.Errorf("after one request with inputs of different batches: presizing %v, %d idle slots for 1 row; want on, 1",
			onnx.Presizing(lm.Runner), onnx.IdleSlots(lm.Runner, 1))
	}
}

// Ensure data that does not fit its shape is refused as it was before
// slots, naming the input, and leaves the next run right.
func TestSlotsLeaveMisfitDataToThePathWithout(t *testing.T) {
	lm := load(t, onnxbuild.Neg(onnxbuild.Float))
	short := &understudy.Tensor{DType: understudy.Float32, Shape: []int64{1, 3}, Data: []float32{1, 2}}
	_, err := lm.Runner.Run(context.Background(), map[string]*understudy.Tensor{"x": short})
	if err == nil || !strings.Contains(err.Error(), `input "x"`) || strings.Contains(err.Error(), "slot") {
		t.Fatalf("run with 2 values for shape [1 3]: %v; want the error of the path without slots, naming the input", err)
	}
	in := negInput(7, 1)
	if err := checkNeg(in, run(t, lm, map[string]*understudy.Tensor{"x": in})["y"]); err != nil {
		t.Error(err)
	}
}
