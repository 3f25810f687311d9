package report

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/understudy-ml/understudy/pkg/store"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// MeasureReport fills db, an empty store, through its writer (so the
// rollups are the writer's own) with pairs iris-shaped primary/shadow pairs
// spread over the week before now, labels 2% of them, and times Build for
// the window "all". The pairs are varied: |Δ| spans five decades, so that
// about 0.5% of the classes flip, latencies vary, and 0.2% of shadow runs
// fail and 0.1% time out.
func MeasureReport(db store.Store, pairs int) (fill, build time.Duration, err error) {
	ctx := context.Background()
	now := time.Now()
	start := time.Now()
	if err := Fill(ctx, db, pairs, now.Add(-7*24*time.Hour), now, 0.02); err != nil {
		return 0, 0, err
	}
	fill = time.Since(start)
	start = time.Now()
	if _, err := Build(ctx, db, Query{Window: "all", Tolerance: DefaultTolerance}, DefaultThresholds, now); err != nil {
		return 0, 0, err
	}
	return fill, time.Since(start), nil
}

// Fill writes n sample pairs (see MeasureReport) with times spread evenly
// over [from, to) through db's writer, then labels the share labelled of
// them. It is deterministic: the same arguments write the same rows.
func Fill(ctx context.Context, db store.Store, n int, from, to time.Time, labelled float64) error {
	rng := rand.New(rand.NewPCG(1, 2))
	step := to.Sub(from) / time.Duration(max(n, 1))
	var labels []understudy.Label
	for i := range n {
		// The writer's queue is the only buffer; hold back rather than
		// lose rows.
		for st := db.Stats(); st.QueueDepth > st.QueueCapacity/2; st = db.Stats() {
			time.Sleep(200 * time.Microsecond)
		}
		p, s := SamplePair(rng, "req-"+strconv.Itoa(i), from.Add(time.Duration(i)*step))
		db.WritePrediction(p)
		db.WriteShadowResult(s)
		if rng.Float64() < labelled {
			label := float64(p.Outputs["label"].Data.([]int64)[0])
			if rng.Float64() < 0.1 {
				label = float64(rng.IntN(3))
			}
			labels = append(labels, understudy.Label{ID: p.ID, Value: label})
		}
	}
	if err := db.Flush(ctx); err != nil {
		return err
	}
	if st := db.Stats(); st.Predictions.Lost+st.ShadowResults.Lost > 0 {
		return fmt.Errorf("fill: %d rows lost", st.Predictions.Lost+st.ShadowResults.Lost)
	}
	for len(labels) > 0 {
		k := min(len(labels), 10000)
		if _, err := db.SetLabels(ctx, labels[:k]); err != nil {
			return err
		}
		labels = labels[k:]
	}
	return nil
}

var sampleOutputs = []understudy.TensorInfo{
	{Name: "label", DType: understudy.Int64, Dims: []int64{-1}},
	{Name: "probabilities", DType: understudy.Float32, Dims: []int64{-1, 3}},
}

// SamplePair returns an iris-shaped prediction and a shadow result compared
// with understudy.Compare, drawn from rng.
func SamplePair(rng *rand.Rand, id string, at time.Time) (*understudy.Prediction, *understudy.ShadowResult) {
	in := []float32{4 + 4*rng.Float32(), 2 + 2*rng.Float32(), 1 + 6*rng.Float32(), 2.5 * rng.Float32()}
	probs := make([]float32, 3)
	var sum float32
	for i := range probs {
		probs[i] = float32(math.Exp(2 * rng.NormFloat64()))
		sum += probs[i]
	}
	for i := range probs {
		probs[i] /= sum
	}
	// The shadow's probabilities differ by a noise whose size spans
	// decades, so that |Δ| does and some classes flip.
	noise := math.Pow(10, -6+5*rng.Float64())
	sprobs := make([]float32, 3)
	for i := range sprobs {
		sprobs[i] = float32(math.Max(0, float64(probs[i])+noise*rng.NormFloat64()))
	}
	primaryLatency := time.Duration(80e3 * math.Exp(0.3*rng.NormFloat64()))
	p := &understudy.Prediction{
		ID: id, Time: at, Model: "iris", Version: "0123456789ab", Status: understudy.StatusOK,
		Latency: primaryLatency, CPU: primaryLatency * 9 / 10,
		Inputs: map[string]*understudy.Tensor{"input": {DType: understudy.Float32, Shape: []int64{1, 4}, Data: in}},
		Outputs: map[string]*understudy.Tensor{
			"label":         {DType: understudy.Int64, Shape: []int64{1}, Data: []int64{argmax(probs)}},
			"probabilities": {DType: understudy.Float32, Shape: []int64{1, 3}, Data: probs},
		},
	}
	s := &understudy.ShadowResult{
		RequestID: id, Time: at.Add(300 * time.Microsecond), Shadow: "iris-v2", Version: "ba9876543210",
		Primary: p.Model, PrimaryVersion: p.Version, PrimaryLatency: primaryLatency,
		Latency: time.Duration(95e3 * math.Exp(0.35*rng.NormFloat64())),
	}
	s.CPU = s.Latency * 9 / 10
	switch u := rng.Float64(); {
	case u < 0.002:
		s.Status, s.Error = understudy.StatusError, "shadow run failed"
	case u < 0.003:
		s.Status, s.Error = understudy.StatusTimeout, "terminated after the 5s timeout"
	default:
		s.Status = understudy.StatusOK
		s.Outputs = map[string]*understudy.Tensor{
			"label":         {DType: understudy.Int64, Shape: []int64{1}, Data: []int64{argmax(sprobs)}},
			"probabilities": {DType: understudy.Float32, Shape: []int64{1, 3}, Data: sprobs},
		}
		s.Compare = understudy.Compare(sampleOutputs, p.Outputs, s.Outputs)
	}
	return p, s
}

func argmax(xs []float32) int64 {
	best := 0
	for i, x := range xs {
		if x > xs[best] {
			best = i
		}
	}
	return int64(best)
}
