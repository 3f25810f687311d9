package sqlite

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"time"

	"github.com/understudy-ml/understudy/pkg/understudy"
)

// MeasureWriteRate opens a fresh database in dir, writes pairs of rows (one
// prediction and one shadow result each, with iris-sized tensors) as fast as
// the writer takes them, and returns the rows committed per second, counting
// both rows of a pair. The producer holds back when the queue is half full,
// so the figure is the writer's sustained rate, not the queue's.
func MeasureWriteRate(dir string, pairs int) (rowsPerSecond float64, err error) {
	// As the server runs it: shadow results on their own SCHED_IDLE thread.
	db, err := Open(filepath.Join(dir, "measure.db"), Options{ShadowIdle: true})
	if err != nil {
		return 0, err
	}
	defer func() {
		if cerr := db.Close(); err == nil && cerr != nil {
			err = cerr
		}
	}()
	start := time.Now()
	for i := range pairs {
		for db.Stats().QueueDepth > cap(db.queue)/2 {
			time.Sleep(100 * time.Microsecond)
		}
		p, s := SamplePair(strconv.Itoa(i), start)
		db.WritePrediction(p)
		db.WriteShadowResult(s)
	}
	if err := db.Flush(context.Background()); err != nil {
		return 0, err
	}
	elapsed := time.Since(start)
	st := db.Stats()
	if lost := st.Predictions.Lost + st.ShadowResults.Lost; lost > 0 {
		return 0, fmt.Errorf("measure write rate: %d rows lost", lost)
	}
	return float64(st.Predictions.Written+st.ShadowResults.Written) / elapsed.Seconds(), nil
}

// SamplePair returns a prediction and a shadow result shaped like the iris
// demo's: four float inputs, three probabilities and a label per model.
func SamplePair(id string, at time.Time) (*understudy.Prediction, *understudy.ShadowResult) {
	f := float32(len(id)%7) / 10
	agreement, diff := 1.0, 0.0125
	class := int64(len(id) % 3)
	p := &understudy.Prediction{
		ID: id, Time: at, Model: "iris", Version: "0123456789ab", Status: understudy.StatusOK, Latency: 87 * time.Microsecond,
		Inputs: map[string]*understudy.Tensor{
			"input": {DType: understudy.Float32, Shape: []int64{1, 4}, Data: []float32{5.1 + f, 3.5, 1.4 - f, 0.2}},
		},
		Outputs: map[string]*understudy.Tensor{
			"probabilities": {DType: understudy.Float32, Shape: []int64{1, 3}, Data: []float32{0.91 - f, 0.06 + f, 0.03}},
			"label":         {DType: understudy.Int64, Shape: []int64{1}, Data: []int64{class}},
		},
	}
	s := &understudy.ShadowResult{
		RequestID: id, Time: at.Add(200 * time.Microsecond), Shadow: "iris-v2", Version: "ba9876543210",
		Primary: "iris", PrimaryVersion: "0123456789ab", Status: understudy.StatusOK, Latency: 95 * time.Microsecond,
		Outputs: map[string]*understudy.Tensor{
			"probabilities": {DType: understudy.Float32, Shape: []int64{1, 3}, Data: []float32{0.9 - f, 0.07 + f, 0.03}},
			"label":         {DType: understudy.Int64, Shape: []int64{1}, Data: []int64{class}},
		},
		Compare: understudy.Comparison{
			Outputs: []understudy.OutputComparison{
				{Name: "label", Kind: understudy.KindClass, Rows: 1, Agree: 1, PrimaryClasses: []int64{class}, ShadowClasses: []int64{class}},
				{Name: "probabilities", Kind: understudy.KindFloat, MaxAbsDiff: &diff, MeanAbsDiff: &diff},
			},
			Agreement: &agreement, PrimaryClass: &class, ShadowClass: &class, MaxAbsDiff: &diff, MeanAbsDiff: &diff,
		},
	}
	return p, s
}
