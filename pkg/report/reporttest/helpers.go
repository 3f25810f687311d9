package reporttest

import (
	"context"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/understudy-ml/understudy/pkg/report"
	"github.com/understudy-ml/understudy/pkg/store"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// rel is the relative tolerance for values the report sums in another order
// than the test (MAE, RMSE, CPU means): a few ulps, far below any digit shown.
const rel = 1e-12

// signature is the primary's outputs: a class, class scores and a value.
var signature = []understudy.TensorInfo{
	{Name: "label", DType: understudy.Int64, Dims: []int64{-1}},
	{Name: "probabilities", DType: understudy.Float32, Dims: []int64{-1, 3}},
	{Name: "value", DType: understudy.Float32, Dims: []int64{-1, 1}},
}

// req is one primary prediction as a test writes it.
type req struct {
	id      string
	at      time.Time
	failed  bool
	model   string
	version string
	class   int64
	probs   []float32
	value   float32
	latency time.Duration
	cpu     time.Duration
	label   *float64
}

// run is one shadow run of a request. A run with probs answers label and
// probabilities (a classifier); one without answers value only.
type run struct {
	req     *req
	shadow  string
	version string
	at      time.Time
	status  string
	class   int64
	probs   []float32
	value   float32
	latency time.Duration
	cpu     time.Duration
	// origin is one of understudy.Origins; "" is stored as live.
	origin string
}

func (r *req) outputs() map[string]*understudy.Tensor {
	return map[string]*understudy.Tensor{
		"label":         {DType: understudy.Int64, Shape: []int64{1}, Data: []int64{r.class}},
		"probabilities": {DType: understudy.Float32, Shape: []int64{1, 3}, Data: slices.Clone(r.probs)},
		"value":         {DType: understudy.Float32, Shape: []int64{1, 1}, Data: []float32{r.value}},
	}
}

func (r *run) outputs() map[string]*understudy.Tensor {
	if r.probs == nil {
		return map[string]*understudy.Tensor{"value": {DType: understudy.Float32, Shape: []int64{1, 1}, Data: []float32{r.value}}}
	}
	return map[string]*understudy.Tensor{
		"label":         {DType: understudy.Int64, Shape: []int64{1}, Data: []int64{r.class}},
		"probabilities": {DType: understudy.Float32, Shape: []int64{1, 3}, Data: slices.Clone(r.probs)},
	}
}

// write stores the requests, runs and labels through the store's writer.
func write(tb testing.TB, db store.Store, reqs []*req, runs []*run) {
	tb.Helper()
	queue(db, reqs, runs)
	ctx := context.Background()
	if err := db.Flush(ctx); err != nil {
		tb.Fatalf("Flush: %v", err)
	}
	var labels []understudy.Label
	for _, r := range reqs {
		if r.label != nil {
			labels = append(labels, understudy.Label{ID: r.id, Value: *r.label})
		}
	}
	if _, err := db.SetLabels(ctx, labels); err != nil {
		tb.Fatalf("SetLabels: %v", err)
	}
	if st := db.Stats(); st.Predictions.Written != int64(len(reqs)) || st.ShadowResults.Written != int64(len(runs)) {
		tb.Fatalf("written %d predictions and %d shadow results, want %d and %d",
			st.Predictions.Written, st.ShadowResults.Written, len(reqs), len(runs))
	}
}

// queue hands the requests and runs to the store's writer, without
// waiting for it.
func queue(db store.Store, reqs []*req, runs []*run) {
	for _, r := range reqs {
		p := &understudy.Prediction{ID: r.id, Time: r.at, Model: r.model, Version: r.version, Latency: r.latency, CPU: r.cpu,
			Status: understudy.StatusOK,
			Inputs: map[string]*understudy.Tensor{"x": {DType: understudy.Float32, Shape: []int64{1, 1}, Data: []float32{float32(r.value)}}}}
		if r.failed {
			p.Status, p.Error = understudy.StatusError, "primary failed"
		} else {
			p.Outputs = r.outputs()
		}
		db.WritePrediction(p)
	}
	for _, r := range runs {
		s := &understudy.ShadowResult{RequestID: r.req.id, Time: r.at, Shadow: r.shadow, Version: r.version,
			Primary: r.req.model, PrimaryVersion: r.req.version, Latency: r.latency, PrimaryLatency: r.req.latency, CPU: r.cpu, Status: r.status, Origin: r.origin}
		if r.status == understudy.StatusOK {
			s.Outputs = r.outputs()
			s.Compare = understudy.Compare(signature, r.req.outputs(), s.Outputs)
		} else {
			s.Error = "shadow " + r.status
		}
		db.WriteShadowResult(s)
	}
}

// diffs returns the element-wise primary and shadow values of the run's
// first float output, as Compare reads them.
func diffs(r *run) (a, b []float64) {
	if r.probs == nil {
		return []float64{float64(r.req.value)}, []float64{float64(r.value)}
	}
	for i := range r.probs {
		a, b = append(a, float64(r.req.probs[i])), append(b, float64(r.probs[i]))
	}
	return a, b
}

// maxAbs is the largest |a−b|.
func maxAbs(a, b []float64) float64 {
	var m float64
	for i := range a {
		m = math.Max(m, math.Abs(a[i]-b[i]))
	}
	return m
}

// topScores returns the run's top scores of the first float output.
func topScores(r *run) (p, s float64) {
	a, b := diffs(r)
	return slices.Max(a), slices.Max(b)
}

func ptr[T any](v T) *T { return &v }

func assertClose(tb testing.TB, name string, got, want, tol float64) {
	tb.Helper()
	if want == 0 || math.IsInf(want, 0) {
		if got != want {
			tb.Errorf("%s = %.17g, want exactly %.17g", name, got, want)
		}
		return
	}
	if !(math.Abs(got-want) <= tol*math.Abs(want)) {
		tb.Errorf("%s = %.17g, want %.17g (relative error %.2g)", name, got, want, math.Abs(got-want)/math.Abs(want))
	}
}

func assertEqual[T comparable](tb testing.TB, name string, got, want T) {
	tb.Helper()
	if got != want {
		tb.Errorf("%s = %v, want %v", name, got, want)
	}
}

// pairIDs lists the request ids of pairs, in order.
func pairIDs(ps []report.Pair) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.RequestID
	}
	return out
}
