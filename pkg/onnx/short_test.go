package onnx_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/understudy-ml/understudy/pkg/onnx"
	"github.com/understudy-ml/understudy/pkg/onnxbuild"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// Ensure runs measured short skip the cancellation plumbing only up to the
// batch measured: a context already done is still refused, and a larger,
// long run is still terminated by its deadline, after which every batch is
// terminable again.
func TestShortRunsSkipCancellation(t *testing.T) {
	// About 0.15 ms a row: one row is short, 2048 rows take about 300 ms.
	lm := load(t, onnxbuild.Slow(10))
	one := map[string]*understudy.Tensor{"x": {DType: understudy.Float32, Shape: []int64{1, 4}, Data: []float32{1, 2, 3, 4}}}
	for range 500 {
		ctx, cancel := context.WithCancel(context.Background())
		_, err := lm.Runner.Run(ctx, one)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if onnx.ShortBatch(lm.Runner) > 0 {
			break
		}
	}
	short := onnx.ShortBatch(lm.Runner)
	if short != 1 {
		t.Skipf("runs of one row never measured short 16 times in a row (busy machine?); short batch %d", short)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := lm.Runner.Run(ctx, one); !errors.Is(err, context.Canceled) {
		t.Errorf("run with a cancelled context: %v, want context.Canceled", err)
	}

	in := map[string]*understudy.Tensor{"x": {DType: understudy.Float32, Shape: []int64{2048, 4}, Data: make([]float32, 4*2048)}}
	ctx, cancel = context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := lm.Runner.Run(ctx, in)
	if took := time.Since(start); !errors.Is(err, context.DeadlineExceeded) || took > 2*time.Second {
		t.Errorf("2048-row run after %d-row short ones: %v after %v; want it terminated near 50ms", short, err, took)
	}
	if got := onnx.ShortBatch(lm.Runner); got != 0 {
		t.Errorf("after a long run, runs of up to %d rows still skip the plumbing; want 0", got)
	}
}

// doneCounter counts the calls for a context's Done channel, which a
// request's context makes, an allocation, on the first call.
type doneCounter struct {
	context.Context
	calls int
}

func (c *doneCounter) Done() <-chan struct{} {
	c.calls++
	return c.Context.Done()
}

// Ensure a short run never asks its context for the Done channel: it checks
// Err before and after instead.
func TestShortRunsLeaveDoneAlone(t *testing.T) {
	lm := load(t, onnxbuild.RandomMLP(1, 16, []int{64}, 4).Model("tiny"))
	in := map[string]*understudy.Tensor{"input": {DType: understudy.Float32, Shape: []int64{1, 16}, Data: make([]float32, 16)}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for range 500 {
		if _, err := lm.Runner.Run(ctx, in); err != nil {
			t.Fatal(err)
		}
		if onnx.ShortBatch(lm.Runner) > 0 {
			break
		}
	}
	if onnx.ShortBatch(lm.Runner) == 0 {
		t.Skip("runs of one row never measured short 16 times in a row (busy machine?)")
	}
	c := &doneCounter{Context: ctx}
	for range 100 {
		if _, err := lm.Runner.Run(c, in); err != nil {
			t.Fatal(err)
		}
	}
	// A run over a millisecond, on a busy machine, makes the next 16
	// terminable, and those do ask; every run asked before.
	if c.calls > 50 {
		t.Errorf("100 short runs asked for Done %d times, want (nearly) none", c.calls)
	}
}
