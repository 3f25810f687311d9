package onnx_test

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/understudy-ml/understudy/pkg/onnxbuild"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// gatherModel looks rows up in a 10-row table: an index of 10 or more
// fails inside ONNX Runtime, after every check in Go has passed.
func gatherModel(dt onnxbuild.DType) *onnxbuild.Model {
	m := &onnxbuild.Model{Graph: onnxbuild.Graph{
		Name:         "gather",
		Nodes:        []onnxbuild.Node{{Name: "g", OpType: "Gather", Inputs: []string{"table", "idx"}, Outputs: []string{"y"}}},
		Inputs:       []onnxbuild.ValueInfo{{Name: "idx", DType: onnxbuild.Int64, Dims: []int64{-1}}},
		Outputs:      []onnxbuild.ValueInfo{{Name: "y", DType: onnxbuild.Float, Dims: []int64{-1, 3}}},
		Initializers: []onnxbuild.Tensor{onnxbuild.FloatTensor("table", []int64{10, 3}, make([]float32, 30))},
	}}
	if dt == onnxbuild.Float16 {
		m.Graph.Nodes = append(m.Graph.Nodes, onnxbuild.Node{Name: "c", OpType: "Cast", Inputs: []string{"y"}, Outputs: []string{"h"}, Attrs: []onnxbuild.Attr{onnxbuild.AttrInt("to", 10)}})
		m.Graph.Outputs = []onnxbuild.ValueInfo{{Name: "h", DType: onnxbuild.Float16, Dims: []int64{-1, 3}}}
	}
	return m
}

func rssKB(tb testing.TB) int64 {
	tb.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		tb.Skip("no /proc/self/status")
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	tb.Skip("no VmRSS")
	return 0
}

// Ensure runs that fail inside ONNX Runtime hold no memory: with the
// library's telemetry on, each failure queued an event of a few KB that was
// never freed (142 MB over 60,000 failed requests in a review).
func TestFailedRunsHoldNoMemory(t *testing.T) {
	lm := load(t, gatherModel(onnxbuild.Float))
	bad := map[string]*understudy.Tensor{"idx": {DType: understudy.Int64, Shape: []int64{3}, Data: []int64{1, 2, 1000}}}
	fail := func(n int) {
		for range n {
			if _, err := lm.Runner.Run(context.Background(), bad); understudy.ErrorCode(err) != understudy.EMODEL {
				t.Fatalf("run with an index out of range: %v, want a model error", err)
			}
		}
	}
	fail(2000) // warm: allocator pools, first-error paths
	before := rssKB(t)
	const n = 20000
	fail(n)
	grew := rssKB(t) - before
	t.Logf("RSS grew %d KB over %d failed runs", grew, n)
	// A leak of a few KB per run would be tens of MB.
	if grew > 10<<10 {
		t.Errorf("RSS grew %d KB over %d failed runs: failed runs hold memory", grew, n)
	}
}

// Ensure a float16 output, sized in advance, takes its rows from an input
// whose first dimension is dynamic, not from a fixed one listed first.
func TestBatchFromTheDynamicInput(t *testing.T) {
	m := &onnxbuild.Model{Graph: onnxbuild.Graph{
		Name: "two",
		Nodes: []onnxbuild.Node{
			{Name: "c", OpType: "Identity", Inputs: []string{"b"}, Outputs: []string{"y"}},
			{Name: "d", OpType: "Identity", Inputs: []string{"a"}, Outputs: []string{"z"}},
		},
		Inputs:  []onnxbuild.ValueInfo{{Name: "a", DType: onnxbuild.Float, Dims: []int64{2}}, {Name: "b", DType: onnxbuild.Float16, Dims: []int64{-1, 3}}},
		Outputs: []onnxbuild.ValueInfo{{Name: "y", DType: onnxbuild.Float16, Dims: []int64{-1, 3}}, {Name: "z", DType: onnxbuild.Float, Dims: []int64{2}}},
	}}
	lm := load(t, m)
	out := run(t, lm, map[string]*understudy.Tensor{
		"a": {DType: understudy.Float32, Shape: []int64{2}, Data: []float32{1, 2}},
		"b": {DType: understudy.Float16, Shape: []int64{5, 3}, Data: make([]uint16, 15)},
	})
	if y := out["y"]; len(y.Shape) != 2 || y.Shape[0] != 5 {
		t.Errorf("y has shape %v, want [5 3]", y.Shape)
	}
}
