package storetest

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/understudy-ml/understudy/pkg/store"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// day is a midnight inside the generated rows.
var day = time.Date(2030, 5, 2, 0, 0, 0, 0, time.UTC)

// windows cut through days, hours and minutes: the rollups must add up
// the same whichever spans cover them.
var windows = []struct{ from, to time.Time }{
	{time.Time{}, time.Time{}},
	{day, day.Add(24 * time.Hour)},
	{day.Add(-37 * time.Minute), day.Add(49*time.Hour + 13*time.Minute)},
	{day.Add(23*time.Hour + 59*time.Minute), day.Add(24*time.Hour + time.Minute)},
	{day.Add(5 * time.Hour), day.Add(5 * time.Hour)},
	{start.Truncate(time.Minute), start.Add(time.Hour)},
	{time.Time{}, day.Add(3*time.Hour + 7*time.Minute)},
	{day.Add(30 * time.Hour), time.Time{}},
}

// Ensure the rollups, added to over many transactions and read back over
// minutes only (a one-minute step), minutes and hours (an hour step) or
// every span (no step, a day step), equal a recount of the rows written,
// for windows whose edges cut through days and hours; that every series
// step equals a recount of its own span; and that the confusion cells and
// the primary's counts do too.
func testRollupsMatchRaw(t *testing.T, open Opener) {
	st := open(t)
	g := generate(t, st, 3000)
	ctx := context.Background()
	s := snapshot(t, st)

	for _, w := range windows {
		for _, step := range []time.Duration{0, time.Minute, 15 * time.Minute, time.Hour, 6 * time.Hour, 24 * time.Hour, 7 * 24 * time.Hour} {
			name := fmt.Sprintf("%s step %v", window(w.from, w.to), step)
			t.Run(name, func(t *testing.T) {
				sums, err := s.ShadowSummaries(ctx, store.RollupFilter{From: w.from, To: w.to, Step: step})
				if err != nil {
					t.Fatal(err)
				}
				for _, shadow := range []string{"a", "b"} {
					want, cells := g.recount(shadow, w.from, w.to)
					i := slices.IndexFunc(sums, func(s store.ShadowSummary) bool { return s.Shadow == shadow })
					if want.Pairs == 0 {
						if i >= 0 {
							t.Errorf("%s: a summary for an empty window", shadow)
						}
						continue
					}
					if i < 0 {
						t.Fatalf("%s: no summary", shadow)
					}
					sum := sums[i]
					assertCounts(t, shadow+" total", &sum.Total, &want)
					assertEqual(t, shadow+" primaries", str(sum.Primaries), str(g.primaryVersions(shadow, w.from, w.to)))
					var prev time.Time
					for _, p := range sum.Series {
						if !p.Start.After(prev) || p.Start.UnixNano()%int64(step) != 0 {
							t.Errorf("%s: series step at %v after %v: want ascending starts on multiples of %v", shadow, p.Start, prev, step)
						}
						prev = p.Start
						stepWant, _ := g.recount(shadow, maxTime(p.Start, w.from), minTime(p.Start.Add(step), w.to))
						assertCounts(t, fmt.Sprintf("%s step %v", shadow, p.Start.Format("02 15:04")), &p.ShadowCounts, &stepWant)
					}
					if step == 0 {
						assertEqual(t, "series without a step", len(sum.Series), 0)
					}
					got, err := s.Confusion(ctx, shadow, "v", w.from, w.to)
					if err != nil {
						t.Fatal(err)
					}
					gotCells := map[[2]int64]int64{}
					for _, c := range got {
						gotCells[[2]int64{c.Primary, c.Shadow}] = c.N
					}
					assertEqual(t, shadow+" confusion", fmt.Sprint(gotCells), fmt.Sprint(cells))
					if !slices.IsSortedFunc(got, func(a, b store.ConfusionCell) int {
						return cmpInts(a.Primary, b.Primary, a.Shadow, b.Shadow)
					}) {
						t.Errorf("%s confusion not ordered by class: %v", shadow, got)
					}
				}

				prims, err := s.PrimaryCounts(ctx, w.from, w.to)
				if err != nil {
					t.Fatal(err)
				}
				gotPrims := map[string]store.PrimaryCounts{}
				for _, p := range prims {
					gotPrims[p.Version] = p
				}
				assertEqual(t, "primary counts", fmt.Sprint(gotPrims), fmt.Sprint(g.primaries(w.from, w.to)))

				reps, err := s.Replicas(ctx, w.from, w.to)
				if err != nil {
					t.Fatal(err)
				}
				want := g.replica(w.from, w.to)
				switch {
				case want.Requests+want.Pairs == 0 && len(reps) != 0:
					t.Errorf("replicas %+v for an empty window", reps)
				case want.Requests+want.Pairs > 0 && len(reps) != 1:
					t.Errorf("replicas %+v, want the one that wrote", reps)
				case len(reps) == 1:
					want.Replica = reps[0].Replica
					assertEqual(t, "replica counts", fmt.Sprintf("%+v", reps[0]), fmt.Sprintf("%+v", want))
				}
			})
		}
	}

	t.Run("versions and span", func(t *testing.T) {
		vs, err := s.ShadowVersions(ctx)
		if err != nil {
			t.Fatal(err)
		}
		assertEqual(t, "ShadowVersions", str(vs), "[{Name:a Version:v} {Name:b Version:v}]")
		first := map[string]time.Time{}
		for _, r := range g.runs {
			if f, ok := first[r.Shadow]; !ok || r.Time.Before(f) {
				first[r.Shadow] = r.Time
			}
		}
		for _, tt := range []struct{ shadow, version, want string }{
			{"a", "v", first["a"].Truncate(time.Minute).String()},
			{"b", "", first["b"].Truncate(time.Minute).String()},
			{"", "", minTime(first["a"], first["b"]).Truncate(time.Minute).String()},
			{"nope", "", "none"},
		} {
			got, ok, err := s.ShadowSpan(ctx, tt.shadow, tt.version)
			if err != nil {
				t.Fatal(err)
			}
			gotS := "none"
			if ok {
				gotS = got.UTC().String()
			}
			assertEqual(t, fmt.Sprintf("ShadowSpan(%q, %q)", tt.shadow, tt.version), gotS, tt.want)
		}
		var latest *understudy.Prediction
		for _, p := range g.preds {
			if latest == nil || p.Time.After(latest.Time) {
				latest = p
			}
		}
		m, ok, err := s.LatestPrediction(ctx)
		if err != nil || !ok {
			t.Fatalf("LatestPrediction: %v, %v", ok, err)
		}
		assertEqual(t, "LatestPrediction", m, understudy.ModelRef{Name: latest.Model, Version: latest.Version})
	})

	t.Run("filter", func(t *testing.T) {
		sums, err := s.ShadowSummaries(ctx, store.RollupFilter{Shadow: "b", Version: "v", From: day, To: day.Add(24 * time.Hour), Step: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		if len(sums) != 1 || sums[0].Shadow != "b" {
			t.Fatalf("summaries of b: %d, want b only", len(sums))
		}
		want, _ := g.recount("b", day, day.Add(24*time.Hour))
		assertCounts(t, "b", &sums[0].Total, &want)
		none, err := s.ShadowSummaries(ctx, store.RollupFilter{Shadow: "a", Version: "other"})
		if err != nil || len(none) != 0 {
			t.Errorf("summaries of a version never written: %d, %v", len(none), err)
		}
	})
}

// primaryVersions lists the primary versions shadow was compared with in
// [from, to), ordered by name and version.
func (g *generated) primaryVersions(shadow string, from, to time.Time) []understudy.ModelRef {
	var out []understudy.ModelRef
	for _, r := range g.runs {
		ref := understudy.ModelRef{Name: r.Primary, Version: r.PrimaryVersion}
		if r.Shadow == shadow && in(r.Time, from, to) && !slices.Contains(out, ref) {
			out = append(out, ref)
		}
	}
	slices.SortFunc(out, func(a, b understudy.ModelRef) int {
		return strings.Compare(a.Name+"\x00"+a.Version, b.Name+"\x00"+b.Version)
	})
	return out
}

func cmpInts(a1, b1, a2, b2 int64) int {
	switch {
	case a1 != b1:
		return int(max(-1, min(1, a1-b1)))
	case a2 != b2:
		return int(max(-1, min(1, a2-b2)))
	}
	return 0
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// minTime is the earlier of a and b, where a zero b is no bound.
func minTime(a, b time.Time) time.Time {
	if !b.IsZero() && b.Before(a) {
		return b
	}
	return a
}

// Ensure the raw-row reads (latencies and differences, newest scores, the
// headline output names) return exactly the rows written in the window.
func testRawReads(t *testing.T, open Opener) {
	st := open(t)
	g := generate(t, st, 1500)
	ctx := context.Background()
	s := snapshot(t, st)
	for _, w := range windows[:4] {
		for _, shadow := range []string{"a", "b"} {
			t.Run(fmt.Sprintf("%s %s", shadow, window(w.from, w.to)), func(t *testing.T) {
				var lat, plat, diff []float64
				var ok []*understudy.ShadowResult
				for _, r := range g.runs {
					if r.Shadow != shadow || !in(r.Time, w.from, w.to) || r.Status != understudy.StatusOK {
						continue
					}
					ok = append(ok, r)
					lat = append(lat, float64(r.Latency.Microseconds()))
					plat = append(plat, float64(r.PrimaryLatency.Microseconds()))
					if r.Compare.MaxAbsDiff != nil {
						diff = append(diff, *r.Compare.MaxAbsDiff)
					}
				}
				got, err := s.PairSamples(ctx, shadow, "v", w.from, w.to)
				if err != nil {
					t.Fatal(err)
				}
				for _, f := range []struct {
					name      string
					got, want []float64
				}{{"Latency", got.Latency, lat}, {"PrimaryLatency", got.PrimaryLatency, plat}, {"MaxAbsDiff", got.MaxAbsDiff, diff}} {
					g, w := slices.Clone(f.got), slices.Clone(f.want)
					slices.Sort(g)
					slices.Sort(w)
					if !slices.Equal(g, w) {
						t.Errorf("PairSamples.%s: %d values, want %d (or values differ)", f.name, len(g), len(w))
					}
				}

				slices.SortFunc(ok, func(a, b *understudy.ShadowResult) int { return b.Time.Compare(a.Time) })
				const limit = 50
				var wantP, wantS []float64
				for _, r := range ok[:min(limit, len(ok))] {
					wantP, wantS = append(wantP, *r.Compare.PrimaryScore), append(wantS, *r.Compare.ShadowScore)
				}
				ps, ss, err := s.Scores(ctx, shadow, "v", w.from, w.to, limit)
				if err != nil {
					t.Fatal(err)
				}
				assertEqual(t, "primary scores", fmt.Sprint(ps), fmt.Sprint(wantP))
				assertEqual(t, "shadow scores", fmt.Sprint(ss), fmt.Sprint(wantS))

				class, float, err := s.OutputNames(ctx, shadow, "v", w.from, w.to)
				if err != nil {
					t.Fatal(err)
				}
				wantClass, wantFloat := "", ""
				if len(ok) > 0 {
					wantClass, wantFloat = store.HeadlineOutputs(&ok[0].Compare)
				}
				assertEqual(t, "OutputNames", class+"/"+float, wantClass+"/"+wantFloat)
			})
		}
	}
}

// Ensure the labelled comparison counts every labelled request of the
// window once per ok shadow run, whether its label came before the shadow
// row or after, as computed here from the labels and comparisons written.
func testAccuracy(t *testing.T, open Opener) {
	st := open(t)
	g := generate(t, st, 2000)
	ctx := context.Background()
	s := snapshot(t, st)
	// The windows long enough to hold labels.
	for _, w := range []struct{ from, to time.Time }{windows[0], windows[1], windows[2], windows[6], windows[7]} {
		for _, shadow := range []string{"a", "b"} {
			t.Run(fmt.Sprintf("%s %s", shadow, window(w.from, w.to)), func(t *testing.T) {
				want := g.accuracy(shadow, w.from, w.to)
				if want.Labelled == 0 {
					t.Fatal("no labelled pair in the window: the test checks nothing")
				}
				got, err := s.Accuracy(ctx, shadow, "v", w.from, w.to)
				if err != nil {
					t.Fatal(err)
				}
				assertClose(t, "PrimaryAbsErr", got.PrimaryAbsErr, want.PrimaryAbsErr)
				assertClose(t, "ShadowAbsErr", got.ShadowAbsErr, want.ShadowAbsErr)
				got.PrimaryAbsErr, got.ShadowAbsErr = want.PrimaryAbsErr, want.ShadowAbsErr
				assertEqual(t, "Accuracy", got, want)
			})
		}
	}
}

// accuracy computes the labelled comparison of shadow's ok runs over the
// requests whose prediction time is in [from, to), from the labels and
// comparisons written.
func (g *generated) accuracy(shadow string, from, to time.Time) store.AccuracyCounts {
	predTime := map[string]time.Time{}
	for _, p := range g.preds {
		predTime[p.ID] = p.Time
	}
	var want store.AccuracyCounts
	for _, r := range g.runs {
		l, ok := g.labels[r.RequestID]
		if r.Shadow != shadow || !ok || r.Status != understudy.StatusOK || !in(predTime[r.RequestID], from, to) {
			continue
		}
		c := &r.Compare
		want.Labelled++
		if l != math.Round(l) {
			want.NonIntegral++
		}
		pc, sc := c.PrimaryClass, c.ShadowClass
		if pc == nil || sc == nil {
			want.NoClass++
		}
		pr, sr := pc != nil && float64(*pc) == l, sc != nil && float64(*sc) == l
		want.PrimaryCorrect += b2i(pr)
		want.ShadowCorrect += b2i(sr)
		if pc != nil && sc != nil {
			want.B += b2i(pr && !sr)
			want.C += b2i(!pr && sr)
		}
		if c.PrimaryScore != nil && c.ShadowScore != nil {
			pe, se := math.Abs(*c.PrimaryScore-l), math.Abs(*c.ShadowScore-l)
			want.Scored++
			want.PrimaryAbsErr += pe
			want.ShadowAbsErr += se
			want.PrimaryCloser += b2i(pe < se)
			want.ShadowCloser += b2i(se < pe)
		}
	}
	return want
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}
