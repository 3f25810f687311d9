package storetest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/understudy-ml/understudy/pkg/store"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// pairOf returns an iris-shaped prediction and an agreeing shadow result.
func pairOf(id string, at time.Time) (*understudy.Prediction, *understudy.ShadowResult) {
	diff, agreement, class := 0.0125, 1.0, int64(len(id)%3)
	p := &understudy.Prediction{ID: id, Time: at, Model: "iris", Version: "0123456789ab", Status: understudy.StatusOK,
		Latency: 87 * time.Microsecond,
		Inputs:  map[string]*understudy.Tensor{"input": {DType: understudy.Float32, Shape: []int64{1, 4}, Data: []float32{5.1, 3.5, 1.4, 0.2}}},
		Outputs: map[string]*understudy.Tensor{"label": {DType: understudy.Int64, Shape: []int64{1}, Data: []int64{class}}},
	}
	s := &understudy.ShadowResult{RequestID: id, Time: at.Add(200 * time.Microsecond), Shadow: "iris-v2", Version: "ba9876543210",
		Primary: "iris", PrimaryVersion: "0123456789ab", Status: understudy.StatusOK, Latency: 95 * time.Microsecond, PrimaryLatency: p.Latency,
		Outputs: map[string]*understudy.Tensor{"label": {DType: understudy.Int64, Shape: []int64{1}, Data: []int64{class}}},
		Compare: understudy.Comparison{Agreement: &agreement, PrimaryClass: &class, ShadowClass: &class, MaxAbsDiff: &diff, MeanAbsDiff: &diff},
	}
	return p, s
}

// Ensure predictions and shadow results read back as written: times to the
// microsecond, tensors, hashes, latencies, CPU, statuses, errors and the
// comparison; a request with shadow rows only reads back without its
// prediction, and one with nothing stored is ENOTFOUND.
func testRoundTrip(t *testing.T, open Opener) {
	st := open(t)
	at := time.UnixMicro(1_900_000_000_123_456)
	inputs := map[string]*understudy.Tensor{"input": {DType: understudy.Float32, Shape: []int64{1, 4}, Data: []float32{5.1, 3.5, 1.4, 0.2}}}
	outputs := map[string]*understudy.Tensor{
		"probabilities": {DType: understudy.Float32, Shape: []int64{1, 3}, Data: []float32{0.9, 0.07, float32(math.NaN())}},
		"label":         {DType: understudy.Int64, Shape: []int64{1}, Data: []int64{2}},
	}
	ok := &understudy.Prediction{ID: "ok", Time: at, Model: "iris", Version: "0123456789ab", Inputs: inputs, Outputs: outputs,
		Latency: 1234 * time.Microsecond, CPU: 1100 * time.Microsecond, Status: understudy.StatusOK}
	failed := &understudy.Prediction{ID: "failed", Time: at.Add(time.Second), Model: "iris", Version: "0123456789ab", Inputs: inputs,
		Latency: time.Millisecond, Status: understudy.StatusError, Error: "model failed"}
	st.WritePrediction(ok)
	st.WritePrediction(failed)
	shadows := []*understudy.ShadowResult{
		{RequestID: "ok", Time: at.Add(time.Millisecond), Shadow: "iris-v2", Version: "ba9876543210", Primary: "iris", PrimaryVersion: "0123456789ab",
			Outputs: outputs, Latency: 2 * time.Millisecond, PrimaryLatency: ok.Latency, CPU: 1900 * time.Microsecond, Status: understudy.StatusOK,
			Compare: understudy.Comparison{
				Outputs: []understudy.OutputComparison{
					{Name: "label", Kind: understudy.KindClass, Rows: 1, Agree: 0, PrimaryClasses: []int64{2}, ShadowClasses: []int64{1}},
					{Name: "probabilities", Kind: understudy.KindFloat, MaxAbsDiff: ptr(0.25), MeanAbsDiff: ptr(0.125)},
				},
				Agreement: ptr(0.0), PrimaryClass: ptr(int64(2)), ShadowClass: ptr(int64(1)), MaxAbsDiff: ptr(0.25), MeanAbsDiff: ptr(0.125),
				SumSqDiff: ptr(0.0625), Elements: 3, PrimaryScore: ptr(0.9), ShadowScore: ptr(0.7),
			}},
		{RequestID: "ok", Time: at.Add(time.Second), Shadow: "slow", Version: "cccccccccccc", Primary: "iris", PrimaryVersion: "0123456789ab",
			Latency: time.Second, Status: understudy.StatusTimeout, Error: "deadline exceeded"},
		{RequestID: "orphan", Time: at, Shadow: "slow", Version: "cccccccccccc", Primary: "iris", PrimaryVersion: "0123456789ab",
			Latency: time.Second, Status: understudy.StatusError, Error: "boom"},
	}
	for _, s := range shadows {
		st.WriteShadowResult(s)
	}
	flush(t, st)

	for _, want := range []*understudy.Prediction{ok, failed} {
		t.Run("prediction "+want.ID, func(t *testing.T) {
			r := request(t, st, want.ID)
			if r == nil || r.Prediction == nil {
				t.Fatalf("Request(%s): no prediction", want.ID)
			}
			p := r.Prediction
			enc := store.EncodeTensors(want.Inputs)
			sum := sha256.Sum256(enc)
			assertEqual(t, "RequestID", p.RequestID, want.ID)
			assertEqual(t, "Time", p.Time.Equal(want.Time), true)
			assertEqual(t, "Model", p.Model+"@"+p.Version, want.Model+"@"+want.Version)
			assertEqual(t, "InputsSHA256", p.InputsSHA256, hex.EncodeToString(sum[:]))
			assertEqual(t, "InputsSize", p.InputsSize, len(enc))
			tensorsJSON(t, "Inputs", p.Inputs, want.Inputs)
			if want.Outputs != nil {
				tensorsJSON(t, "Outputs", p.Outputs, want.Outputs)
			} else {
				assertEqual(t, "Outputs", p.Outputs, "")
			}
			assertEqual(t, "Latency", p.Latency, want.Latency)
			assertEqual(t, "CPU", p.CPU, want.CPU)
			assertEqual(t, "Status", p.Status+": "+p.Error, want.Status+": "+want.Error)
			assertEqual(t, "Label", p.Label == nil && p.LabelTime.IsZero(), true)
		})
	}
	t.Run("shadow results", func(t *testing.T) {
		r := request(t, st, "ok")
		if len(r.Shadows) != 2 {
			t.Fatalf("%d shadow results, want 2", len(r.Shadows))
		}
		for i, want := range shadows[:2] {
			g := r.Shadows[i]
			assertEqual(t, "Time", g.Time.Equal(want.Time), true)
			assertEqual(t, "names", fmt.Sprint(g.Shadow, g.Version, g.PrimaryModel, g.PrimaryVersion), fmt.Sprint(want.Shadow, want.Version, want.Primary, want.PrimaryVersion))
			if want.Outputs != nil {
				tensorsJSON(t, "Outputs", g.Outputs, want.Outputs)
			} else {
				assertEqual(t, "Outputs", g.Outputs, "")
			}
			assertEqual(t, "Latency", g.Latency, want.Latency)
			assertEqual(t, "CPU", g.CPU, want.CPU)
			if want.PrimaryLatency > 0 {
				assertEqual(t, "PrimaryLatency", deref(g.PrimaryLatency), any(want.PrimaryLatency))
			} else {
				assertEqual(t, "PrimaryLatency", g.PrimaryLatency == nil, true)
			}
			assertEqual(t, "Status", g.Status+": "+g.Error, want.Status+": "+want.Error)
			gotC, _ := json.Marshal(g.Compare)
			wantC, _ := json.Marshal(want.Compare)
			assertEqual(t, "Compare", string(gotC), string(wantC))
		}
	})
	t.Run("shadow rows only", func(t *testing.T) {
		r := request(t, st, "orphan")
		if r == nil || r.Prediction != nil || len(r.Shadows) != 1 || r.Shadows[0].Error != "boom" {
			t.Errorf("Request(orphan) = %+v; want its shadow row without a prediction", r)
		}
	})
	t.Run("unknown", func(t *testing.T) {
		if r := request(t, st, "nope"); r != nil {
			t.Errorf("Request(nope) = %+v, want ENOTFOUND", r)
		}
	})
}

// Ensure a request id already stored is ignored and counted as a duplicate,
// within one batch and across batches, and that another shadow version of
// the id is not.
func testDuplicates(t *testing.T, open Opener) {
	st := open(t)
	p, s := pairOf("dup", time.Now())
	st.WritePrediction(p)
	st.WritePrediction(p)
	st.WriteShadowResult(s)
	flush(t, st)
	st.WritePrediction(p)
	st.WriteShadowResult(s)
	other := *s
	other.Version = "ffffffffffff"
	st.WriteShadowResult(&other)
	flush(t, st)
	assertEqual(t, "shadow rows", len(request(t, st, "dup").Shadows), 2)
	stats := st.Stats()
	assertEqual(t, "prediction stats", stats.Predictions, store.TableStats{Written: 1, Duplicate: 2})
	assertEqual(t, "shadow stats", stats.ShadowResults, store.TableStats{Written: 2, Duplicate: 1})
	s2 := snapshot(t, st)
	prims, err := s2.PrimaryCounts(context.Background(), time.Time{}, time.Time{})
	if err != nil || len(prims) != 1 || prims[0].Requests != 1 {
		t.Errorf("primary counts %+v, %v; want one request: duplicates are not counted", prims, err)
	}
}

// Ensure skip counters add up per shadow, version and minute, read over the
// whole minutes covering a window, and that calls with nothing to count
// are not counted.
func testSkips(t *testing.T, open Opener) {
	st := open(t)
	minute := time.Date(2030, 6, 1, 10, 20, 0, 0, time.UTC)
	st.CountSkips("s", "v1", minute, 1, 0)
	st.CountSkips("s", "v1", minute.Add(30*time.Second), 2, 1)
	st.CountSkips("s", "v2", minute, 0, 4)
	st.CountSkips("s", "v1", minute.Add(time.Hour), 10, 0)
	st.CountSkips("other", "v1", minute, 100, 100)
	st.CountSkips("s", "v1", minute, 0, 0) // nothing to count
	flush(t, st)
	st.CountSkips("s", "v1", minute, 1000, 0)
	flush(t, st)
	s := snapshot(t, st)
	for _, tt := range []struct {
		shadow, version     string
		from, to            time.Time
		sampledOut, dropped int64
	}{
		{"s", "v1", time.Time{}, time.Time{}, 1013, 1},
		{"s", "v2", time.Time{}, time.Time{}, 0, 4},
		{"other", "v1", time.Time{}, time.Time{}, 100, 100},
		{"none", "v1", time.Time{}, time.Time{}, 0, 0},
		// Widened to whole minutes: [10:20:59, 10:21) is the minute 10:20.
		{"s", "v1", minute.Add(59 * time.Second), minute.Add(time.Minute), 1003, 1},
		{"s", "v1", minute.Add(time.Minute), minute.Add(time.Hour), 0, 0},
		{"s", "v1", minute.Add(time.Minute), minute.Add(time.Hour + time.Second), 10, 0},
	} {
		sk, err := s.SkipCounts(context.Background(), tt.shadow, tt.version, tt.from, tt.to)
		if err != nil {
			t.Fatal(err)
		}
		assertEqual(t, fmt.Sprintf("SkipCounts(%s, %s, %v, %v)", tt.shadow, tt.version, tt.from, tt.to), [3]int64{sk.SampledOut, sk.Dropped, sk.Reasons[understudy.DropShed]}, [3]int64{tt.sampledOut, tt.dropped, tt.dropped})
	}
	assertEqual(t, "skips written", st.Stats().Skips.Written, 6)
}

// Ensure labels attach to stored predictions, refuse unknown ids without
// changing anything, report replaced labels, keep an equal one as it is,
// and find a prediction written just before without an explicit flush.
func testLabels(t *testing.T, open Opener) {
	st := open(t)
	ctx := context.Background()
	now := time.Now()
	for _, id := range []string{"a", "b"} {
		p, _ := pairOf(id, now)
		st.WritePrediction(p)
	}
	label := func(id string) *float64 {
		t.Helper()
		r := request(t, st, id)
		if r == nil || r.Prediction == nil {
			t.Fatalf("no prediction %s", id)
		}
		return r.Prediction.Label
	}
	for _, tt := range []struct {
		name     string
		labels   []understudy.Label
		code     string
		replaced []understudy.Label
		after    map[string]*float64
	}{
		{"first labels", []understudy.Label{{ID: "a", Value: 1}}, "", nil, map[string]*float64{"a": ptr(1.0), "b": nil}},
		{"unknown id changes nothing", []understudy.Label{{ID: "b", Value: 2}, {ID: "zzz", Value: 2}}, understudy.ENOTFOUND, nil,
			map[string]*float64{"a": ptr(1.0), "b": nil}},
		{"replace", []understudy.Label{{ID: "a", Value: 2}, {ID: "b", Value: 0.5}}, "",
			[]understudy.Label{{ID: "a", Value: 2, Previous: ptr(1.0)}}, map[string]*float64{"a": ptr(2.0), "b": ptr(0.5)}},
		{"same value is no replacement", []understudy.Label{{ID: "a", Value: 2}}, "", nil, map[string]*float64{"a": ptr(2.0)}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			replaced, err := st.SetLabels(ctx, tt.labels)
			if got := understudy.ErrorCode(err); got != tt.code {
				t.Fatalf("SetLabels error = %v, want code %q", err, tt.code)
			}
			if err != nil && !strings.Contains(understudy.ErrorMessage(err), `"zzz"`) {
				t.Errorf("error %q does not name the unknown id", understudy.ErrorMessage(err))
			}
			if !reflect.DeepEqual(replaced, tt.replaced) {
				t.Errorf("replaced = %+v, want %+v", replaced, tt.replaced)
			}
			for id, want := range tt.after {
				if got := label(id); !reflect.DeepEqual(got, want) {
					t.Errorf("label of %s = %v, want %v", id, deref(got), deref(want))
				}
			}
		})
	}
	t.Run("right after the prediction", func(t *testing.T) {
		p, _ := pairOf("c", now)
		st.WritePrediction(p)
		before := time.Now()
		if _, err := st.SetLabels(ctx, []understudy.Label{{ID: "c", Value: 0}}); err != nil {
			t.Fatalf("SetLabels: %v", err)
		}
		after := time.Now()
		r := request(t, st, "c").Prediction
		if r.Label == nil || *r.Label != 0 || r.LabelTime.Before(before.Truncate(time.Microsecond)) || r.LabelTime.After(after) {
			t.Errorf("label = %v at %v, want 0 between %v and %v", deref(r.Label), r.LabelTime, before, after)
		}
	})
	t.Run("none", func(t *testing.T) {
		if replaced, err := st.SetLabels(ctx, nil); err != nil || replaced != nil {
			t.Errorf("SetLabels(nil) = %v, %v", replaced, err)
		}
	})
}

// Ensure events come back newest first, filtered by model and time, limited,
// each with an id of its own.
func testEvents(t *testing.T, open Opener) {
	st := open(t)
	ctx := context.Background()
	base := time.UnixMicro(1_900_000_000_000_000)
	evs := []understudy.Event{
		{Time: base, Kind: understudy.EventLoaded, Model: "a", Version: "v1", Actor: "startup", Detail: "load 1 ms", Replica: "replica-1"},
		{Time: base.Add(time.Second), Kind: understudy.EventLoaded, Model: "b", Version: "v2", Actor: "watcher", Replica: "replica-2"},
		{Time: base.Add(2 * time.Second), Kind: understudy.EventPromoted, Model: "b", Version: "v2", Actor: "admin", Detail: "replaces a@v1", Replica: "replica-1"},
		{Time: base.Add(2 * time.Second), Kind: understudy.EventSettings, Model: "b", Actor: "admin", Replica: "replica-2"},
	}
	for _, ev := range evs {
		if err := st.RecordEvent(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	all, err := st.Events(ctx, store.EventFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 4 {
		t.Fatalf("%d events, want 4", len(all))
	}
	// Equal times: the one recorded last first.
	for i, want := range []understudy.Event{evs[3], evs[2], evs[1], evs[0]} {
		got := all[i]
		if got.ID == 0 || (i > 0 && got.ID == all[i-1].ID) {
			t.Errorf("event %d: id %d, want one of its own", i, got.ID)
		}
		got.ID = 0
		if !got.Time.Equal(want.Time) {
			t.Errorf("event %d: time %v, want %v", i, got.Time, want.Time)
		}
		got.Time = want.Time
		assertEqual(t, fmt.Sprint("event ", i), got, want)
	}
	for _, tt := range []struct {
		f    store.EventFilter
		want int
	}{
		{store.EventFilter{Model: "b"}, 3},
		{store.EventFilter{Model: "b", Limit: 1}, 1},
		{store.EventFilter{Since: base.Add(time.Second)}, 3},
		{store.EventFilter{Model: "a", Since: base.Add(time.Second)}, 0},
	} {
		got, err := st.Events(ctx, tt.f)
		if err != nil {
			t.Fatal(err)
		}
		assertEqual(t, fmt.Sprintf("Events(%+v)", tt.f), len(got), tt.want)
	}
}

// Ensure the deployment state reads back exactly as last saved, and a
// fresh store has none.
func testDeployment(t *testing.T, open Opener) {
	st := open(t)
	ctx := context.Background()
	if d, err := st.LoadDeployment(ctx); err != nil || d != nil {
		t.Fatalf("fresh store: %+v, %v; want nil", d, err)
	}
	want := understudy.Deployment{
		Primary:  understudy.ModelRef{Name: "iris-v2", Version: "872a8a469673"},
		Previous: []understudy.ModelRef{{Name: "iris-v1", Version: "783aec65f792"}},
		Settings: map[string]understudy.ShadowSettings{"iris-v1": {Sampling: 0.25, TimeoutMS: 200, Paused: true}},
	}
	if err := st.SaveDeployment(ctx, understudy.Deployment{Primary: understudy.ModelRef{Name: "old"}}); err != nil {
		t.Fatal(err)
	}
	if err := st.SaveDeployment(ctx, want); err != nil {
		t.Fatal(err)
	}
	got, err := st.LoadDeployment(ctx)
	if err != nil || got == nil || !reflect.DeepEqual(*got, want) {
		t.Errorf("got %+v, %v; want %+v", got, err, want)
	}
}

// Ensure a model version is recorded once, its first sighting kept and its
// last one bumped, its memory kept when a later sighting does not know it,
// listed by name and first sighting; and that a model without a version is
// refused.
func testModels(t *testing.T, open Opener) {
	st := open(t)
	ctx := context.Background()
	sig := &understudy.Signature{Inputs: []understudy.TensorInfo{{Name: "input", DType: understudy.Float32, Dims: []int64{-1, 4}}}}
	m := understudy.ModelInfo{Name: "iris", Version: "0123456789ab", SHA256: "0123456789ab" + strings.Repeat("0", 52), File: "iris.onnx", Size: 1234,
		Signature: sig, Metadata: &understudy.Metadata{Producer: "test", Version: 3}, MemoryBytes: 4096}
	record := func(m understudy.ModelInfo) {
		t.Helper()
		// Sightings apart in time, however coarse the store's clock.
		time.Sleep(2 * time.Millisecond)
		if err := st.RecordModel(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	before := time.Now()
	record(understudy.ModelInfo{Name: "zeta", Version: "1", SHA256: "z", File: "zeta.onnx", Size: 1})
	record(m)
	m.File, m.MemoryBytes = "renamed.onnx", 0
	record(m)
	m2 := m
	m2.Version = "ffffffffffff"
	record(m2)
	after := time.Now()
	if err := st.RecordModel(ctx, understudy.ModelInfo{Name: "broken"}); understudy.ErrorCode(err) != understudy.EINVALID {
		t.Errorf("RecordModel without a version = %v, want EINVALID", err)
	}
	got, err := st.Models(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []store.ModelRecord{
		{Name: "iris", Version: "0123456789ab", SHA256: m.SHA256, File: "renamed.onnx", Size: 1234, Signature: sig, Metadata: m.Metadata, MemoryBytes: 4096},
		{Name: "iris", Version: "ffffffffffff", SHA256: m.SHA256, File: "renamed.onnx", Size: 1234, Signature: sig, Metadata: m.Metadata},
		{Name: "zeta", Version: "1", SHA256: "z", File: "zeta.onnx", Size: 1},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d models, want %d", len(got), len(want))
	}
	for i := range want {
		g := got[i]
		if g.FirstSeen.Before(before.Truncate(time.Microsecond)) || g.LastSeen.After(after) || g.LastSeen.Before(g.FirstSeen) {
			t.Errorf("model %d seen %v..%v, want within %v..%v", i, g.FirstSeen, g.LastSeen, before, after)
		}
		g.FirstSeen, g.LastSeen = time.Time{}, time.Time{}
		if !reflect.DeepEqual(g, want[i]) {
			t.Errorf("model %d = %+v, want %+v", i, g, want[i])
		}
	}
	if !got[0].LastSeen.After(got[0].FirstSeen) {
		t.Errorf("iris first seen %v, last %v: want the second sighting later", got[0].FirstSeen, got[0].LastSeen)
	}
}
