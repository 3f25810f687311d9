package storetest

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/understudy-ml/understudy/pkg/store"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// Ensure the searches for disagreements and for the largest |Δ| return the
// same pairs as sorting every stored pair, for any window and limit, with
// and without class outputs, and that every record carries its label.
func testPairsSearch(t *testing.T, open Opener) {
	st := open(t)
	g := generate(t, st, 3000)
	const tol = 1e-4
	for _, w := range []struct{ from, to time.Time }{
		{time.Time{}, time.Time{}},
		{day.Add(-37*time.Minute - 5*time.Second), day.Add(49*time.Hour + 13*time.Minute)},
		{day.Add(3 * time.Hour), day.Add(3*time.Hour + 20*time.Minute)},
	} {
		for _, shadow := range []string{"a", "b", ""} {
			var inWindow []*understudy.ShadowResult
			for _, r := range g.runs {
				if (shadow == "" || r.Shadow == shadow) && in(r.Time, w.from, w.to) {
					inWindow = append(inWindow, r)
				}
			}
			for _, limit := range []int{1, 20, 5000} {
				name := fmt.Sprintf("%q %s limit %d", shadow, window(w.from, w.to), limit)
				t.Run(name, func(t *testing.T) {
					// Newest disagreements: ties in time cannot happen.
					var want []string
					byTime := slices.Clone(inWindow)
					slices.SortFunc(byTime, func(a, b *understudy.ShadowResult) int { return b.Time.Compare(a.Time) })
					for _, r := range byTime {
						c := &r.Compare
						if r.Status != understudy.StatusOK || (c.Agreement != nil && *c.Agreement < 1) ||
							(c.Agreement == nil && c.MaxAbsDiff != nil && *c.MaxAbsDiff > tol) {
							want = append(want, r.Shadow+"/"+r.RequestID)
						}
					}
					got := pairs(t, st, store.PairFilter{Shadow: shadow, Since: w.from, Until: w.to, DisagreeOnly: true, Tolerance: tol, Limit: limit})
					assertEqual(t, "disagreements", fmt.Sprint(keys(got)), fmt.Sprint(want[:min(limit, len(want))]))
					for _, p := range got {
						l, ok := g.labels[p.RequestID]
						if ok != (p.Label != nil) || ok && *p.Label != l {
							t.Errorf("%s label %v, want %v (labelled %v)", p.RequestID, deref(p.Label), l, ok)
						}
					}

					// Largest |Δ|: compared by value, as which of equal
					// values comes first is unspecified.
					var diffs []float64
					for _, r := range inWindow {
						if r.Compare.MaxAbsDiff != nil {
							diffs = append(diffs, *r.Compare.MaxAbsDiff)
						}
					}
					slices.SortFunc(diffs, func(a, b float64) int { return cmp.Compare(b, a) })
					got = pairs(t, st, store.PairFilter{Shadow: shadow, Since: w.from, Until: w.to, Order: store.ByDiff, Limit: limit})
					var gotDiffs []float64
					for _, p := range got {
						gotDiffs = append(gotDiffs, *p.MaxAbsDiff)
					}
					assertEqual(t, "largest", fmt.Sprint(gotDiffs), fmt.Sprint(diffs[:min(limit, len(diffs))]))
				})
			}
		}
	}
}

func keys(ps []store.PairRecord) []string {
	out := []string{}
	for _, p := range ps {
		out = append(out, p.Shadow+"/"+p.RequestID)
	}
	return out
}

// Ensure the pairs filters select by shadow, version, window (Since
// included, Until excluded), disagreement and tolerance (a tolerance of 0
// counts any difference), that the default limit is DefaultPairLimit, that
// equal times list the pair stored last first, and that each record holds
// both sides as stored, the prediction's side empty when it is missing.
func testPairsFilters(t *testing.T, open Opener) {
	st := open(t)
	at := time.Date(2030, 7, 1, 12, 0, 0, 0, time.UTC)
	in := map[string]*understudy.Tensor{"x": {DType: understudy.Float32, Shape: []int64{1, 2}, Data: []float32{1, 2}}}
	out := map[string]*understudy.Tensor{"y": {DType: understudy.Float32, Shape: []int64{1, 1}, Data: []float32{0.5}}}
	sout := map[string]*understudy.Tensor{"y": {DType: understudy.Float32, Shape: []int64{1, 1}, Data: []float32{0.5 + 1e-6}}}
	type spec struct {
		id, shadow, version string
		at                  time.Duration
		status              string
		agreement, diff     *float64
		noPrediction        bool
	}
	specs := []spec{
		{"agree", "s", "1", 0, understudy.StatusOK, ptr(1.0), ptr(0.0), false},
		{"disagree", "s", "1", time.Second, understudy.StatusOK, ptr(0.5), ptr(0.25), false},
		{"error", "s", "1", 2 * time.Second, understudy.StatusError, nil, nil, false},
		{"timeout", "s", "2", 3 * time.Second, understudy.StatusTimeout, nil, nil, false},
		{"tiny", "r", "1", 4 * time.Second, understudy.StatusOK, nil, ptr(1e-6), false},
		{"big", "r", "1", 5 * time.Second, understudy.StatusOK, nil, ptr(0.5), false},
		{"exact", "r", "1", 6 * time.Second, understudy.StatusOK, nil, ptr(0.0), false},
		{"orphan", "r", "1", 7 * time.Second, understudy.StatusOK, nil, ptr(0.125), true},
		// Stored in this order with one time: "tie-2" is the newer.
		{"tie-1", "t", "1", 8 * time.Second, understudy.StatusOK, nil, ptr(0.0), false},
		{"tie-2", "t", "1", 8 * time.Second, understudy.StatusOK, nil, ptr(0.0), false},
	}
	for _, sp := range specs {
		p := &understudy.Prediction{ID: sp.id, Time: at.Add(sp.at - time.Millisecond), Model: "m", Version: "p", Status: understudy.StatusOK,
			Inputs: in, Outputs: out, Latency: time.Millisecond}
		s := &understudy.ShadowResult{RequestID: sp.id, Time: at.Add(sp.at), Shadow: sp.shadow, Version: sp.version, Primary: "m", PrimaryVersion: "p",
			Latency: 2 * time.Millisecond, PrimaryLatency: time.Millisecond, Status: sp.status}
		if sp.status == understudy.StatusOK {
			s.Outputs = sout
			s.Compare = understudy.Comparison{Agreement: sp.agreement, MaxAbsDiff: sp.diff, MeanAbsDiff: sp.diff}
			if sp.agreement != nil {
				s.Compare.PrimaryClass, s.Compare.ShadowClass = ptr(int64(1)), ptr(int64(1))
				if *sp.agreement < 1 {
					s.Compare.ShadowClass = ptr(int64(2))
				}
			}
		} else {
			s.Error = "shadow " + sp.status
		}
		if !sp.noPrediction {
			st.WritePrediction(p)
		}
		// One commit per pair, so that their order of storage is theirs.
		flush(t, st)
		st.WriteShadowResult(s)
		flush(t, st)
	}
	if _, err := st.SetLabels(context.Background(), []understudy.Label{{ID: "disagree", Value: 2}}); err != nil {
		t.Fatal(err)
	}

	for _, tt := range []struct {
		name string
		f    store.PairFilter
		want string
	}{
		{"all newest first", store.PairFilter{}, "tie-2 tie-1 orphan exact big tiny timeout error disagree agree"},
		{"shadow", store.PairFilter{Shadow: "s"}, "timeout error disagree agree"},
		{"version", store.PairFilter{Shadow: "s", Version: "1"}, "error disagree agree"},
		{"since included, until excluded", store.PairFilter{Since: at.Add(time.Second), Until: at.Add(5 * time.Second)}, "tiny timeout error disagree"},
		{"limit", store.PairFilter{Limit: 3}, "tie-2 tie-1 orphan"},
		{"disagreements", store.PairFilter{DisagreeOnly: true, Tolerance: 1e-4}, "orphan big timeout error disagree"},
		{"tolerance 0 is exact", store.PairFilter{DisagreeOnly: true, Shadow: "r"}, "orphan big tiny"},
		{"largest", store.PairFilter{Order: store.ByDiff, Limit: 3}, "big disagree orphan"},
		{"largest disagreements", store.PairFilter{Order: store.ByDiff, DisagreeOnly: true, Tolerance: 0.3}, "big disagree"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var ids []string
			for _, p := range pairs(t, st, tt.f) {
				ids = append(ids, p.RequestID)
			}
			assertEqual(t, "pairs", strings.Join(ids, " "), tt.want)
		})
	}

	t.Run("default limit", func(t *testing.T) {
		st := open(t)
		for i := range store.DefaultPairLimit + 5 {
			_, s := pairOf(fmt.Sprint(i), at.Add(time.Duration(i)*time.Millisecond))
			st.WriteShadowResult(s)
		}
		flush(t, st)
		assertEqual(t, "pairs", len(pairs(t, st, store.PairFilter{})), store.DefaultPairLimit)
	})

	t.Run("records", func(t *testing.T) {
		recs := pairs(t, st, store.PairFilter{Shadow: "s", Version: "1"})
		d, e := recs[1], recs[0]
		assertEqual(t, "RequestID", d.RequestID, "disagree")
		assertEqual(t, "Time", d.Time.Equal(at.Add(time.Second)), true)
		assertEqual(t, "primary", d.PrimaryModel+"@"+d.PrimaryVersion, "m@p")
		assertEqual(t, "shadow", d.Shadow+"@"+d.Version, "s@1")
		assertEqual(t, "Status", d.Status, understudy.StatusOK)
		assertEqual(t, "classes", fmt.Sprint(deref(d.PrimaryClass), deref(d.ShadowClass)), "1 2")
		assertEqual(t, "Agreement", deref(d.Agreement), any(0.5))
		assertEqual(t, "MaxAbsDiff", deref(d.MaxAbsDiff), any(0.25))
		assertEqual(t, "Latency", d.Latency, 2*time.Millisecond)
		assertEqual(t, "PrimaryLatency", deref(d.PrimaryLatency), any(time.Millisecond))
		assertEqual(t, "Label", deref(d.Label), any(2.0))
		tensorsJSON(t, "Inputs", d.Inputs, in)
		tensorsJSON(t, "PrimaryOutputs", d.PrimaryOutputs, out)
		tensorsJSON(t, "ShadowOutputs", d.ShadowOutputs, sout)
		assertEqual(t, "error", e.Status+": "+e.Error, "error: shadow error")
		assertEqual(t, "error's ShadowOutputs", e.ShadowOutputs, "")

		o := pairs(t, st, store.PairFilter{Shadow: "r", Since: at.Add(7 * time.Second), Until: at.Add(8 * time.Second)})
		if len(o) != 1 || o[0].RequestID != "orphan" {
			t.Fatalf("orphan: %v", keys(o))
		}
		assertEqual(t, "orphan's prediction side", fmt.Sprintf("%v|%s|%s", o[0].Label, o[0].Inputs, o[0].PrimaryOutputs), "<nil>||")
		tensorsJSON(t, "orphan's ShadowOutputs", o[0].ShadowOutputs, sout)
	})
}

// tensorsJSON checks that stored JSON decodes to want.
func tensorsJSON(t *testing.T, name, got string, want map[string]*understudy.Tensor) {
	t.Helper()
	m, err := store.DecodeTensors([]byte(got))
	if err != nil {
		t.Errorf("%s: %v", name, err)
		return
	}
	assertEqual(t, name, string(store.EncodeTensors(m)), string(store.EncodeTensors(want)))
}
