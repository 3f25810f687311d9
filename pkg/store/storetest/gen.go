package storetest

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/understudy-ml/understudy/pkg/store"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// generated is what a test wrote, to recount from without the store.
type generated struct {
	preds  []*understudy.Prediction
	runs   []*understudy.ShadowResult
	labels map[string]float64
}

// start is when generated rows begin: mid-minute, mid-hour, so that
// windows cut through every span.
var start = time.Date(2030, 5, 1, 17, 23, 11, 0, time.UTC)

// generate writes n requests over three days from start, each mirrored to
// "a" (a classifier whose batches have three rows) and every third to "b"
// (no class output), flushing every 25 requests so that the rollups are
// added to many times. A tenth of the requests are labelled: half of them
// before their shadow rows are written, half after everything, and a few
// with labels that are not whole numbers.
func generate(t *testing.T, st store.Store, n int) *generated {
	t.Helper()
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(5, 6))
	g := &generated{labels: map[string]float64{}}
	var late []understudy.Label
	for i := range n {
		holdBack(st)
		at := start.Add(time.Duration(rng.Int64N(int64(72 * time.Hour)))).Truncate(time.Microsecond)
		pv := "p1"
		if at.Sub(start) > 40*time.Hour {
			pv = "p2"
		}
		p := &understudy.Prediction{ID: fmt.Sprint("q", i), Time: at, Model: "m", Version: pv, Status: understudy.StatusOK,
			Latency: time.Duration(50+rng.IntN(5000)) * time.Microsecond}
		if rng.IntN(50) == 0 {
			p.Status, p.Error = understudy.StatusError, "failed"
		}
		if rng.IntN(3) > 0 {
			p.CPU = time.Duration(10+rng.IntN(900)) * time.Microsecond
		}
		g.preds = append(g.preds, p)
		st.WritePrediction(p)
		if rng.IntN(10) == 0 {
			l := float64(rng.IntN(4))
			if rng.IntN(8) == 0 {
				l += 0.5
			}
			g.labels[p.ID] = l
			if rng.IntN(2) == 0 {
				// Before the shadow rows exist: the join must still find
				// them once they are written.
				if _, err := st.SetLabels(ctx, []understudy.Label{{ID: p.ID, Value: l}}); err != nil {
					t.Fatalf("SetLabels: %v", err)
				}
			} else {
				late = append(late, understudy.Label{ID: p.ID, Value: l})
			}
		}
		if p.Status == understudy.StatusOK {
			shadows := []string{"a"}
			if i%3 == 0 {
				shadows = append(shadows, "b")
			}
			for _, name := range shadows {
				r := &understudy.ShadowResult{RequestID: p.ID, Time: at.Add(time.Duration(rng.IntN(3000)) * time.Millisecond),
					Shadow: name, Version: "v", Primary: p.Model, PrimaryVersion: pv, PrimaryLatency: p.Latency,
					Latency: time.Duration(50+rng.IntN(8000)) * time.Microsecond, Status: understudy.StatusOK}
				if rng.IntN(4) > 0 {
					r.CPU = time.Duration(10+rng.IntN(900)) * time.Microsecond
				}
				switch rng.IntN(40) {
				case 0:
					r.Status, r.Error = understudy.StatusError, "boom"
				case 1:
					r.Status, r.Error = understudy.StatusTimeout, "slow"
				}
				if r.Status == understudy.StatusOK {
					r.Compare = randomComparison(rng, name == "a", i)
				}
				g.runs = append(g.runs, r)
				st.WriteShadowResult(r)
			}
		}
		if i%25 == 24 {
			flush(t, st)
		}
	}
	flush(t, st)
	if _, err := st.SetLabels(ctx, late); err != nil {
		t.Fatalf("SetLabels: %v", err)
	}
	return g
}

func randomComparison(rng *rand.Rand, classifier bool, i int) understudy.Comparison {
	var c understudy.Comparison
	if classifier {
		if i%11 == 0 {
			// A comparison without its per-output detail counts as one row.
			pc, sc := int64(rng.IntN(3)), int64(rng.IntN(3))
			a := 0.0
			if pc == sc {
				a = 1
			}
			c.Agreement, c.PrimaryClass, c.ShadowClass = &a, &pc, &sc
		} else {
			oc := understudy.OutputComparison{Name: "label", Kind: understudy.KindClass, Rows: 3}
			for range 3 {
				pc := int64(rng.IntN(4))
				sc := pc
				if rng.IntN(8) == 0 {
					sc = int64(rng.IntN(4))
				}
				oc.PrimaryClasses, oc.ShadowClasses = append(oc.PrimaryClasses, pc), append(oc.ShadowClasses, sc)
				if pc == sc {
					oc.Agree++
				}
			}
			a := float64(oc.Agree) / 3
			c.Outputs = append(c.Outputs, oc)
			c.Agreement, c.PrimaryClass, c.ShadowClass = &a, &oc.PrimaryClasses[0], &oc.ShadowClasses[0]
		}
	}
	n := 1 + rng.IntN(5)
	var sum, sq, mx float64
	for range n {
		d := math.Pow(10, -9+8*rng.Float64())
		if rng.IntN(10) == 0 {
			d = 0
		}
		sum, sq, mx = sum+d, sq+d*d, math.Max(mx, d)
	}
	mean := sum / float64(n)
	ps, ss := rng.Float64()*4, rng.Float64()*4
	c.Outputs = append(c.Outputs, understudy.OutputComparison{Name: "scores", Kind: understudy.KindFloat, MaxAbsDiff: &mx, MeanAbsDiff: &mean})
	c.MaxAbsDiff, c.MeanAbsDiff, c.SumSqDiff, c.Elements, c.PrimaryScore, c.ShadowScore = &mx, &mean, &sq, n, &ps, &ss
	return c
}

// in reports whether t is in [from, to), zero times leaving a side open.
func in(t, from, to time.Time) bool {
	return (from.IsZero() || !t.Before(from)) && (to.IsZero() || t.Before(to))
}

// recount sums the runs of a shadow in [from, to) the way the rollups
// should, from the values handed to the store.
func (g *generated) recount(shadow string, from, to time.Time) (store.ShadowCounts, map[[2]int64]int64) {
	c := store.NewShadowCounts()
	cells := map[[2]int64]int64{}
	for _, r := range g.runs {
		if r.Shadow != shadow || !in(r.Time, from, to) {
			continue
		}
		c.Pairs++
		if r.CPU > 0 {
			c.CPUUS += r.CPU.Microseconds()
			c.CPURuns++
		}
		switch r.Status {
		case understudy.StatusError:
			c.Errors++
			continue
		case understudy.StatusTimeout:
			c.Timeouts++
			continue
		}
		c.OK++
		c.Latency.Add(float64(r.Latency.Microseconds()))
		c.PrimaryLatency.Add(float64(r.PrimaryLatency.Microseconds()))
		cmp := &r.Compare
		if cmp.Agreement != nil {
			c.ClassPairs++
			if *cmp.Agreement < 1 {
				c.DisagreePairs++
			}
			if o := cmp.Outputs[0]; o.Kind == understudy.KindClass {
				c.ClassRows += int64(o.Rows)
				c.AgreeRows += int64(o.Agree)
				for i := range o.PrimaryClasses {
					cells[[2]int64{o.PrimaryClasses[i], o.ShadowClasses[i]}]++
				}
			} else {
				c.ClassRows++
				if *cmp.Agreement == 1 {
					c.AgreeRows++
				}
				cells[[2]int64{*cmp.PrimaryClass, *cmp.ShadowClass}]++
			}
		}
		if cmp.MaxAbsDiff != nil {
			c.FloatPairs++
			c.Elements += int64(cmp.Elements)
			c.SumAbs += *cmp.MeanAbsDiff * float64(cmp.Elements)
			c.SumSq += *cmp.SumSqDiff
			if c.MaxAbs == nil || *cmp.MaxAbsDiff > *c.MaxAbs {
				c.MaxAbs = ptr(*cmp.MaxAbsDiff)
			}
			c.Diff.Add(*cmp.MaxAbsDiff)
		}
	}
	return c, cells
}

// primaries sums the predictions in [from, to) by version.
func (g *generated) primaries(from, to time.Time) map[string]store.PrimaryCounts {
	want := map[string]store.PrimaryCounts{}
	for _, p := range g.preds {
		if !in(p.Time, from, to) {
			continue
		}
		c := want[p.Version]
		c.Model, c.Version = p.Model, p.Version
		c.Requests++
		if p.Status != understudy.StatusOK {
			c.Errors++
		}
		if p.CPU > 0 {
			c.CPUUS += p.CPU.Microseconds()
			c.CPURuns++
		}
		want[p.Version] = c
	}
	return want
}

// replica counts what one replica wrote in [from, to), with the first and
// last minute that holds a row.
func (g *generated) replica(from, to time.Time) store.ReplicaCounts {
	var c store.ReplicaCounts
	seen := func(at time.Time) {
		m := at.Truncate(time.Minute).UTC()
		if c.First.IsZero() || m.Before(c.First) {
			c.First = m
		}
		if m.After(c.Last) {
			c.Last = m
		}
	}
	for _, p := range g.preds {
		if in(p.Time, from, to) {
			c.Requests++
			if p.Status != understudy.StatusOK {
				c.Errors++
			}
			seen(p.Time)
		}
	}
	for _, r := range g.runs {
		if in(r.Time, from, to) {
			c.Pairs++
			seen(r.Time)
		}
	}
	return c
}

func assertCounts(t *testing.T, name string, got, want *store.ShadowCounts) {
	t.Helper()
	for _, f := range []struct {
		name      string
		got, want int64
	}{
		{"Pairs", got.Pairs, want.Pairs}, {"OK", got.OK, want.OK}, {"Errors", got.Errors, want.Errors},
		{"Timeouts", got.Timeouts, want.Timeouts}, {"ClassPairs", got.ClassPairs, want.ClassPairs},
		{"DisagreePairs", got.DisagreePairs, want.DisagreePairs}, {"ClassRows", got.ClassRows, want.ClassRows},
		{"AgreeRows", got.AgreeRows, want.AgreeRows}, {"FloatPairs", got.FloatPairs, want.FloatPairs},
		{"Elements", got.Elements, want.Elements}, {"CPUUS", got.CPUUS, want.CPUUS}, {"CPURuns", got.CPURuns, want.CPURuns},
	} {
		assertEqual(t, name+"."+f.name, f.got, f.want)
	}
	assertClose(t, name+".SumAbs", got.SumAbs, want.SumAbs)
	assertClose(t, name+".SumSq", got.SumSq, want.SumSq)
	assertEqual(t, name+".MaxAbs", str(deref(got.MaxAbs)), str(deref(want.MaxAbs)))
	for _, h := range []struct {
		name      string
		got, want *store.Histogram
	}{{"Diff", got.Diff, want.Diff}, {"Latency", got.Latency, want.Latency}, {"PrimaryLatency", got.PrimaryLatency, want.PrimaryLatency}} {
		assertEqual(t, name+"."+h.name+".Total", h.got.Total, h.want.Total)
		for i := range h.want.Counts {
			if h.got.Counts[i] != h.want.Counts[i] {
				t.Errorf("%s.%s bucket %d = %d, want %d", name, h.name, i, h.got.Counts[i], h.want.Counts[i])
				break
			}
		}
	}
}
