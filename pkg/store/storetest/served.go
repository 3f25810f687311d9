package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/understudy-ml/understudy/pkg/store"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// Ensure who answered each request routed to a canary is stored whatever
// the order its rows arrive in, and that ServedCounts counts, in
// a window exact to the microsecond, the predictions a canary answered and
// its fallbacks (its failed pairs on requests the primary then answered),
// never its pairs on requests the primary answered as usual.
func testServed(t *testing.T, open Opener) {
	st := open(t)
	t0 := time.Date(2030, 6, 1, 10, 0, 0, 0, time.UTC)
	sig := &understudy.Signature{Outputs: []understudy.TensorInfo{{Name: "y", DType: understudy.Float32, Dims: []int64{-1, 1}}}}
	out := map[string]*understudy.Tensor{"y": {DType: understudy.Float32, Shape: []int64{1, 1}, Data: []float32{1}}}
	write := func(i int, servedBy string) {
		id := fmt.Sprintf("served-%d", i)
		at := t0.Add(time.Duration(i) * time.Second)
		model, status := "p", understudy.StatusOK
		pair := &understudy.ShadowResult{RequestID: id, Time: at, Shadow: "c", Version: "c1", Primary: "p", PrimaryVersion: "p1",
			Outputs: out, Status: understudy.StatusOK, ServedBy: servedBy}
		switch servedBy {
		case understudy.ServedCandidate:
			model = "c"
		case understudy.ServedFallback:
			pair.Outputs, pair.Status, pair.Error = nil, understudy.StatusError, "failed"
		}
		version := model + "1"
		p := &understudy.Prediction{ID: id, Time: at, Model: model, Version: version, Signature: sig,
			Inputs: out, Outputs: out, Status: status, ServedBy: servedBy}
		st.WritePrediction(p)
		st.WriteShadowResult(pair)
		flush(t, st)
	}
	// Seconds 0-9: 4 answered by the canary, 3 fallbacks, 3 as usual.
	kinds := []string{understudy.ServedCandidate, understudy.ServedPrimary, understudy.ServedFallback, understudy.ServedCandidate,
		understudy.ServedFallback, "", understudy.ServedCandidate, understudy.ServedFallback, understudy.ServedCandidate, understudy.ServedPrimary}
	for i, k := range kinds {
		write(i, k)
	}
	s := snapshot(t, st)
	for _, tt := range []struct {
		from, to            time.Time
		answered, fallbacks int64
	}{
		{time.Time{}, time.Time{}, 4, 3},
		{t0, t0.Add(3 * time.Second), 1, 1},
		{t0.Add(3 * time.Second), t0.Add(10 * time.Second), 3, 2},
		{t0.Add(time.Hour), time.Time{}, 0, 0},
	} {
		got, err := s.ServedCounts(context.Background(), tt.from, tt.to)
		if err != nil {
			t.Fatal(err)
		}
		var want []store.ServedCounts
		if tt.answered+tt.fallbacks > 0 {
			want = []store.ServedCounts{{Model: "c", Version: "c1", Answered: tt.answered, Fallbacks: tt.fallbacks}}
		}
		if len(got) == 0 {
			got = nil
		}
		assertEqual(t, fmt.Sprintf("ServedCounts(%v, %v)", tt.from, tt.to), fmt.Sprint(got), fmt.Sprint(want))
	}
	pairs := pairs(t, st, store.PairFilter{Shadow: "c", Limit: 100})
	assertEqual(t, "pairs of the canary", len(pairs), len(kinds))
}
