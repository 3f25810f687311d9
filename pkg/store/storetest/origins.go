package storetest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/understudy-ml/understudy/pkg/store"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// viewOrigins are the origins a snapshot can be viewed through: every one
// (""), then each alone.
var viewOrigins = append([]string{""}, understudy.Origins...)

// generateOrigins writes n ok requests over three days from start, each
// mirrored to "a" with an origin drawn at random ("" and "live" both
// meaning live), and every fifth also to "c" by a backtest; a tenth are
// labelled. A backfill or backtest result carries its request's time, as
// the contract asks.
func generateOrigins(t *testing.T, st store.Store, n int) *generated {
	t.Helper()
	rng := rand.New(rand.NewPCG(7, 8))
	g := &generated{labels: map[string]float64{}}
	origins := []string{"", understudy.OriginLive, understudy.OriginBackfill, understudy.OriginBacktest}
	var labels []understudy.Label
	for i := range n {
		holdBack(st)
		at := start.Add(time.Duration(rng.Int64N(int64(72 * time.Hour)))).Truncate(time.Microsecond)
		p := &understudy.Prediction{ID: fmt.Sprint("o", i), Time: at, Model: "m", Version: "p1", Status: understudy.StatusOK,
			Latency: time.Duration(50+rng.IntN(5000)) * time.Microsecond}
		g.preds = append(g.preds, p)
		st.WritePrediction(p)
		if rng.IntN(10) == 0 {
			l := float64(rng.IntN(4))
			g.labels[p.ID] = l
			labels = append(labels, understudy.Label{ID: p.ID, Value: l})
		}
		runs := map[string]string{"a": origins[rng.IntN(len(origins))]}
		if i%5 == 0 {
			runs["c"] = understudy.OriginBacktest
		}
		for _, name := range []string{"a", "c"} {
			origin, ok := runs[name]
			if !ok {
				continue
			}
			r := &understudy.ShadowResult{RequestID: p.ID, Time: at, Shadow: name, Version: "v", Primary: p.Model, PrimaryVersion: p.Version,
				PrimaryLatency: p.Latency, Latency: time.Duration(50+rng.IntN(8000)) * time.Microsecond, Status: understudy.StatusOK, Origin: origin}
			if understudy.StoredOrigin(origin) == understudy.OriginLive {
				r.Time = at.Add(time.Duration(rng.IntN(3000)) * time.Millisecond)
			}
			if rng.IntN(4) > 0 {
				r.CPU = time.Duration(10+rng.IntN(900)) * time.Microsecond
			}
			switch rng.IntN(30) {
			case 0:
				r.Status, r.Error = understudy.StatusError, "boom"
			case 1:
				r.Status, r.Error = understudy.StatusTimeout, "slow"
			default:
				r.Compare = randomComparison(rng, true, i)
			}
			g.runs = append(g.runs, r)
			st.WriteShadowResult(r)
		}
		if i%25 == 24 {
			flush(t, st)
		}
	}
	flush(t, st)
	if _, err := st.SetLabels(context.Background(), labels); err != nil {
		t.Fatalf("SetLabels: %v", err)
	}
	return g
}

// of returns what g wrote, its shadow runs reduced to those of origin
// ("" for every one).
func (g *generated) of(origin string) *generated {
	o := &generated{preds: g.preds, labels: g.labels}
	for _, r := range g.runs {
		if origin == "" || understudy.StoredOrigin(r.Origin) == origin {
			o.runs = append(o.runs, r)
		}
	}
	return o
}

// Ensure a shadow result's origin is stored ("" as live) and reads back in
// Request and Pairs, and that a view of one origin sees that origin's
// shadow rows only, while the prediction and the snapshot stay.
func testOriginRoundTrip(t *testing.T, open Opener) {
	st := open(t)
	ctx := context.Background()
	at := time.Date(2030, 6, 1, 8, 0, 0, 0, time.UTC)
	p, live := pairOf("r1", at)
	st.WritePrediction(p)
	live.Shadow = "s1"
	backfill, backtest := *live, *live
	backfill.Shadow, backfill.Origin = "s2", understudy.OriginBackfill
	backtest.Shadow, backtest.Origin = "s3", understudy.OriginBacktest
	_, orphan := pairOf("r2", at.Add(time.Second))
	orphan.Origin = understudy.OriginLive
	for _, r := range []*understudy.ShadowResult{live, &backfill, &backtest, orphan} {
		st.WriteShadowResult(r)
	}
	flush(t, st)

	origins := func(r *store.StoredRequest) string {
		var out []string
		for _, s := range r.Shadows {
			out = append(out, s.Shadow+":"+s.Origin)
		}
		return fmt.Sprint(out)
	}
	assertEqual(t, "origins of r1", origins(request(t, st, "r1")), "[s1:live s2:backfill s3:backtest]")
	var got []string
	for _, r := range pairs(t, st, store.PairFilter{Limit: 10}) {
		got = append(got, r.RequestID+"/"+r.Shadow+":"+r.Origin)
	}
	slices.Sort(got)
	assertEqual(t, "origins of the pairs", fmt.Sprint(got), "[r1/s1:live r1/s2:backfill r1/s3:backtest r2/iris-v2:live]")

	s := snapshot(t, st)
	for _, tt := range []struct {
		origin, r1, r2, pairs, versions string
	}{
		{"", "[s1:live s2:backfill s3:backtest]", "[iris-v2:live]", "4", "[iris-v2 s1 s2 s3]"},
		{understudy.OriginLive, "[s1:live]", "[iris-v2:live]", "2", "[iris-v2 s1]"},
		{understudy.OriginBackfill, "[s2:backfill]", "not found", "1", "[s2]"},
		{understudy.OriginBacktest, "[s3:backtest]", "not found", "1", "[s3]"},
	} {
		t.Run(fmt.Sprintf("view %q", tt.origin), func(t *testing.T) {
			v := s.Origin(tt.origin)
			r, err := v.Request(ctx, "r1")
			if err != nil || r.Prediction == nil {
				t.Fatalf("Request(r1) = %+v, %v; want the prediction whatever the view", r, err)
			}
			assertEqual(t, "r1", origins(r), tt.r1)
			r, err = v.Request(ctx, "r2")
			gotR2 := "not found"
			if understudy.ErrorCode(err) != understudy.ENOTFOUND {
				if err != nil {
					t.Fatal(err)
				}
				gotR2 = origins(r)
			}
			assertEqual(t, "r2, which has shadow rows only", gotR2, tt.r2)
			ps, err := v.Pairs(ctx, store.PairFilter{Limit: 10})
			if err != nil {
				t.Fatal(err)
			}
			assertEqual(t, "pairs", fmt.Sprint(len(ps)), tt.pairs)
			for _, p := range ps {
				if tt.origin != "" && p.Origin != tt.origin {
					t.Errorf("pair %s/%s of origin %q in the view of %q", p.RequestID, p.Shadow, p.Origin, tt.origin)
				}
			}
			vs, err := v.ShadowVersions(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, m := range vs {
				names = append(names, m.Name)
			}
			assertEqual(t, "versions", fmt.Sprint(names), tt.versions)
			// A view's Close leaves the snapshot open.
			if err := v.Close(); err != nil {
				t.Errorf("view Close: %v", err)
			}
			if _, err := s.Request(ctx, "r1"); err != nil {
				t.Errorf("the snapshot after its view's Close: %v", err)
			}
		})
	}
}

// Ensure the rollups are kept per origin: through a view of each origin,
// the summaries, confusion cells, labelled comparison, pair samples,
// versions and first minute equal a recount of that origin's runs, the
// view of every origin equals their sum, and the pairs search finds that
// origin's disagreements only.
func testOriginRollups(t *testing.T, open Opener) {
	st := open(t)
	g := generateOrigins(t, st, 1500)
	ctx := context.Background()
	s := snapshot(t, st)
	total := map[string]int64{}
	for _, origin := range viewOrigins {
		v := s.Origin(origin)
		want := g.of(origin)
		if origin != "" && len(want.runs) == 0 {
			t.Fatalf("no run of origin %s: the test checks nothing", origin)
		}
		for i, w := range []struct{ from, to time.Time }{windows[0], windows[1], windows[2], windows[3]} {
			step := []time.Duration{0, time.Hour}[i%2]
			t.Run(fmt.Sprintf("%q %s step %v", origin, window(w.from, w.to), step), func(t *testing.T) {
				sums, err := v.ShadowSummaries(ctx, store.RollupFilter{From: w.from, To: w.to, Step: step})
				if err != nil {
					t.Fatal(err)
				}
				for _, shadow := range []string{"a", "c"} {
					wantC, cells := want.recount(shadow, w.from, w.to)
					i := slices.IndexFunc(sums, func(s store.ShadowSummary) bool { return s.Shadow == shadow })
					if wantC.Pairs == 0 {
						if i >= 0 {
							t.Errorf("%s: a summary without pairs of the origin", shadow)
						}
					} else if i < 0 {
						t.Errorf("%s: no summary", shadow)
					} else {
						assertCounts(t, shadow, &sums[i].Total, &wantC)
						if w.from.IsZero() && w.to.IsZero() && origin != "" {
							total[shadow] += sums[i].Total.Pairs
						}
					}
					got, err := v.Confusion(ctx, shadow, "v", w.from, w.to)
					if err != nil {
						t.Fatal(err)
					}
					gotCells := map[[2]int64]int64{}
					for _, c := range got {
						gotCells[[2]int64{c.Primary, c.Shadow}] = c.N
					}
					assertEqual(t, shadow+" confusion", fmt.Sprint(gotCells), fmt.Sprint(cells))

					acc, err := v.Accuracy(ctx, shadow, "v", w.from, w.to)
					if err != nil {
						t.Fatal(err)
					}
					wantA := want.accuracy(shadow, w.from, w.to)
					assertClose(t, shadow+" PrimaryAbsErr", acc.PrimaryAbsErr, wantA.PrimaryAbsErr)
					acc.PrimaryAbsErr, acc.ShadowAbsErr = wantA.PrimaryAbsErr, wantA.ShadowAbsErr
					assertEqual(t, shadow+" Accuracy", acc, wantA)

					var lat []float64
					for _, r := range want.runs {
						if r.Shadow == shadow && r.Status == understudy.StatusOK && in(r.Time, w.from, w.to) {
							lat = append(lat, float64(r.Latency.Microseconds()))
						}
					}
					ps, err := v.PairSamples(ctx, shadow, "v", w.from, w.to)
					if err != nil {
						t.Fatal(err)
					}
					gotLat := slices.Clone(ps.Latency)
					slices.Sort(gotLat)
					slices.Sort(lat)
					assertEqual(t, shadow+" PairSamples latencies", fmt.Sprint(gotLat), fmt.Sprint(lat))
				}
			})
		}
		t.Run(fmt.Sprintf("%q versions, span and pairs", origin), func(t *testing.T) {
			vs, err := v.ShadowVersions(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var wantVs []understudy.ModelRef
			var first time.Time
			for _, r := range want.runs {
				if ref := (understudy.ModelRef{Name: r.Shadow, Version: r.Version}); !slices.Contains(wantVs, ref) {
					wantVs = append(wantVs, ref)
				}
				if first.IsZero() || r.Time.Before(first) {
					first = r.Time
				}
			}
			slices.SortFunc(wantVs, func(a, b understudy.ModelRef) int {
				return strings.Compare(a.Name+"\x00"+a.Version, b.Name+"\x00"+b.Version)
			})
			assertEqual(t, "ShadowVersions", str(vs), str(wantVs))
			got, ok, err := v.ShadowSpan(ctx, "", "")
			if err != nil || !ok {
				t.Fatalf("ShadowSpan: %v, %v", ok, err)
			}
			assertEqual(t, "ShadowSpan", got.UTC().String(), first.Truncate(time.Minute).UTC().String())

			const tol = 1e-4
			var wantIDs []string
			for _, r := range want.runs {
				c := &r.Compare
				if r.Shadow == "a" && (r.Status != understudy.StatusOK || (c.Agreement != nil && *c.Agreement < 1) ||
					(c.Agreement == nil && c.MaxAbsDiff != nil && *c.MaxAbsDiff > tol)) {
					wantIDs = append(wantIDs, r.RequestID)
				}
			}
			found, err := v.Pairs(ctx, store.PairFilter{Shadow: "a", DisagreeOnly: true, Tolerance: tol, Limit: 5000})
			if err != nil {
				t.Fatal(err)
			}
			var gotIDs []string
			for _, p := range found {
				gotIDs = append(gotIDs, p.RequestID)
				if origin != "" && p.Origin != origin {
					t.Errorf("pair %s of origin %q in the view of %q", p.RequestID, p.Origin, origin)
				}
			}
			slices.Sort(gotIDs)
			slices.Sort(wantIDs)
			assertEqual(t, "disagreements", fmt.Sprint(gotIDs), fmt.Sprint(wantIDs))
		})
	}
	t.Run("every origin is the sum of each", func(t *testing.T) {
		sums, err := s.ShadowSummaries(ctx, store.RollupFilter{})
		if err != nil {
			t.Fatal(err)
		}
		for _, sm := range sums {
			assertEqual(t, sm.Shadow+" pairs", sm.Total.Pairs, total[sm.Shadow])
		}
	})
}
