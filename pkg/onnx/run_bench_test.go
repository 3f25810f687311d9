package onnx_test

import (
	"context"
	"testing"

	"github.com/understudy-ml/understudy/pkg/onnxbuild"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// BenchmarkRunTiny is one request's run of the bench's tiny MLP (16→64→4),
// one row: the Go side of a run (values in and out, cgo) beside ONNX
// Runtime's own work, which at this size is about the same.
func BenchmarkRunTiny(b *testing.B) {
	lm := load(b, onnxbuild.RandomMLP(1, 16, []int{64}, 4).Model("tiny"))
	row := make([]float32, 16)
	for i := range row {
		row[i] = float32(i) / 16
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b.ReportAllocs()
	for b.Loop() {
		in := map[string]*understudy.Tensor{"input": {DType: understudy.Float32, Shape: []int64{1, 16}, Data: row}}
		if _, err := lm.Runner.Run(ctx, in); err != nil {
			b.Fatal(err)
		}
	}
}
