package reporttest

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/understudy-ml/understudy/pkg/report"
	"github.com/understudy-ml/understudy/pkg/store/storetest"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// Ensure a small case computed by hand comes out to the digit: 20 pairs
// with the confusion matrix [[5 3] [10 2]], |Δ| of (i+1)/1024 on one of
// three elements, latencies of 1 to 20 ms against twice that, and 10 labels.
func testBuildByHand(t *testing.T, open storetest.Opener) {
	db := open(t)
	start := now.Add(-30 * time.Minute)
	var reqs []*req
	var runs []*run
	// Pairs 0-4 are (0, 0), 5-7 (0, 1), 8-17 (1, 0) and 18-19 (1, 1).
	classes := [][2]int64{}
	for i := range 20 {
		switch {
		case i < 5:
			classes = append(classes, [2]int64{0, 0})
		case i < 8:
			classes = append(classes, [2]int64{0, 1})
		case i < 18:
			classes = append(classes, [2]int64{1, 0})
		default:
			classes = append(classes, [2]int64{1, 1})
		}
	}
	// b = 1 (pair 5), c = 4 (pairs 8-11), both right: 0, 1, 18, 19; both
	// wrong: 12.
	labels := map[int]float64{0: 0, 1: 0, 5: 0, 8: 0, 9: 0, 10: 0, 11: 0, 12: 2, 18: 1, 19: 1}
	for i := range 20 {
		r := &req{id: fmt.Sprintf("h%02d", i), at: start.Add(time.Duration(i) * time.Second), model: "m", version: "1",
			class: classes[i][0], probs: []float32{0.5, 0.25, 0.25}, latency: time.Duration(i+1) * time.Millisecond}
		if l, ok := labels[i]; ok {
			r.label = &l
		}
		reqs = append(reqs, r)
		runs = append(runs, &run{req: r, shadow: "hand", version: "2", at: r.at, status: understudy.StatusOK,
			class: classes[i][1], probs: []float32{0.5 + float32(i+1)/1024, 0.25, 0.25}, latency: 2 * r.latency})
	}
	write(t, db, reqs, runs)

	got, err := report.Build(context.Background(), db, report.Query{Window: "1h", Tolerance: 10.0 / 1024}, report.DefaultThresholds, now)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	if len(got.Shadows) != 1 {
		t.Fatalf("%d shadows, want 1", len(got.Shadows))
	}
	sr := got.Shadows[0]

	c := sr.Classification
	assertEqual(t, "Agree", c.Agree, 7)
	assertEqual(t, "Pairs", c.Pairs, 20)
	assertEqual(t, "Agreement", c.Agreement, 0.35)
	// The reference values of pkg/stats' Wilson test for 7/20.
	assertClose(t, "WilsonLow", c.WilsonLow, 0.18119182410108206, 1e-15)
	assertClose(t, "WilsonHigh", c.WilsonHigh, 0.56714572331476375, 1e-15)
	assertEqual(t, "Confusion", fmt.Sprint(c.Confusion), "[[5 3] [10 2]]")
	// pₒ = 7/20, pₑ = (8·15 + 12·5)/400 = 0.45: κ = −0.1/0.55 = −2/11.
	assertClose(t, "Kappa", c.Kappa, -2.0/11, 1e-15)
	// Primary shares .4/.6 (expected), shadow .75/.25 (actual).
	assertClose(t, "PSI", *sr.Drift.PSI, (0.75-0.4)*math.Log(0.75/0.4)+(0.25-0.6)*math.Log(0.25/0.6), 1e-15)

	g := sr.Regression
	assertEqual(t, "Elements", g.Elements, 60)
	// Σ(i+1) = 210 and Σ(i+1)² = 2870, in units of 1/1024, over 60
	// elements.
	assertClose(t, "MAE", g.MAE, 210.0/1024/60, 1e-15)
	assertClose(t, "RMSE", g.RMSE, math.Sqrt(2870.0/1024/1024/60), 1e-15)
	assertEqual(t, "MaxAbs", g.MaxAbs, 20.0/1024)
	assertEqual(t, "WithinTol", g.WithinTol, 0.5)

	a := sr.Accuracy
	assertEqual(t, "Labelled", a.Labelled, 10)
	assertEqual(t, "PrimaryAcc", a.PrimaryAcc, 0.5)
	assertEqual(t, "ShadowAcc", a.ShadowAcc, 0.8)
	assertEqual(t, "B, C", fmt.Sprint(a.B, a.C), "1 4")
	// 2·P[X ≤ 1] for X ~ Binomial(5, ½) = 2·6/32.
	assertEqual(t, "McNemarP", a.McNemarP, 0.375)

	// 1..20 ms: h = 19q; p95 = 19 + .05, p99 = 19 + .81 (ms).
	l := sr.Latency
	assertClose(t, "PrimaryP50", l.PrimaryP50, 10500, 1e-15)
	assertClose(t, "PrimaryP95", l.PrimaryP95, 19050, 1e-15)
	assertClose(t, "PrimaryP99", l.PrimaryP99, 19810, 1e-15)
	assertClose(t, "ShadowP50", l.ShadowP50, 21000, 1e-15)
	assertClose(t, "ShadowP95", l.ShadowP95, 38100, 1e-15)
	assertClose(t, "ShadowP99", l.ShadowP99, 39620, 1e-15)
	assertClose(t, "RatioP50", l.RatioP50, 2, 1e-15)
	assertClose(t, "RatioP99", l.RatioP99, 2, 1e-15)

	// Every shadow score is above every primary score: D = 1, and the
	// exact p is 2/C(40, 20).
	assertEqual(t, "KSD", *sr.Drift.KSD, 1.0)
	assertClose(t, "KSP", *sr.Drift.KSP, 2/137846528820.0, 1e-12)

	checkVerdict(t, sr.Verdict, []report.Check{
		{Name: "pairs", Pass: false},     // 20 < 30
		{Name: "agreement", Pass: false}, // 0.181 < 0.8
		{Name: "latency", Pass: false},   // 2 > 1.5
		{Name: "errors", Pass: true},     // 0 ≤ 0.001
		{Name: "accuracy", Pass: true},   // the shadow is better
	})
	assertEqual(t, "pairs detail", sr.Verdict.Checks[0].Detail, "20 compared pairs (need at least 30)")
}

// Ensure the accuracy check fails a shadow that is significantly worse on
// at least 10 labels, and passes with fewer whatever they say.
func testAccuracyCheck(t *testing.T, open storetest.Opener) {
	for _, tt := range []struct {
		name   string
		n      int
		pass   bool
		detail string
	}{
		{"12 labels, shadow always wrong", 12, false, "accuracy on 12 labelled pairs: shadow 0.0000, primary 1.0000; only the primary right 12, only the shadow right 0; McNemar p = 0.0004883 (fail when worse and p < 0.05)"},
		{"9 labels", 9, true, "not enough labels: 9 labelled pairs, 9 comparable (the check needs 10)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			db := open(t)
			var reqs []*req
			var runs []*run
			for i := range tt.n {
				r := &req{id: fmt.Sprint(i), at: now.Add(-time.Minute), model: "m", version: "1", class: 1,
					probs: []float32{0, 1, 0}, latency: time.Millisecond, label: ptr(1.0)}
				reqs = append(reqs, r)
				runs = append(runs, &run{req: r, shadow: "s", version: "2", at: r.at, status: understudy.StatusOK,
					class: 0, probs: []float32{1, 0, 0}, latency: time.Millisecond})
			}
			write(t, db, reqs, runs)
			got, err := report.Build(context.Background(), db, report.Query{Window: "15m"}, report.DefaultThresholds, now)
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			c := got.Shadows[0].Verdict.Checks[4]
			assertEqual(t, "Name", c.Name, "accuracy")
			assertEqual(t, "Pass", c.Pass, tt.pass)
			assertEqual(t, "Detail", c.Detail, tt.detail)
		})
	}
}

// Ensure a shadow that answers +Inf where the primary answers a number
// still gives a report JSON can carry, with the difference shown as the
// largest float64.
func testBuildInfiniteDifference(t *testing.T, open storetest.Opener) {
	db := open(t)
	r := &req{id: "inf", at: now.Add(-time.Minute), model: "m", version: "1", value: 1, latency: time.Millisecond}
	write(t, db, []*req{r}, []*run{{req: r, shadow: "s", version: "2", at: r.at, status: understudy.StatusOK,
		value: float32(math.Inf(1)), latency: time.Millisecond}})
	got, err := report.Build(context.Background(), db, report.Query{Window: "15m"}, report.DefaultThresholds, now)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	if _, err := json.Marshal(got); err != nil {
		t.Fatalf("the report is not JSON: %v", err)
	}
	g := got.Shadows[0].Regression
	assertEqual(t, "MaxAbs", g.MaxAbs, math.MaxFloat64)
	assertEqual(t, "MAE", g.MAE, math.MaxFloat64)
	bins := got.Shadows[0].Charts.DiffHist
	assertEqual(t, "last bin", fmt.Sprint(bins[len(bins)-1]), fmt.Sprintf("{%g %g 1}", 1e12, math.MaxFloat64))
	assertEqual(t, "largest pair", *got.Shadows[0].Disagreements.Largest[0].MaxAbsDiff, math.MaxFloat64)
}

// Ensure low agreement does not fail a shadow whose disagreements are
// corrections: with 12 labels where only the shadow is right, agreement is 0
// but McNemar says the shadow is significantly better.
func testAgreementCheckForgivesCorrections(t *testing.T, open storetest.Opener) {
	db := open(t)
	var reqs []*req
	var runs []*run
	for i := range 12 {
		r := &req{id: fmt.Sprint(i), at: now.Add(-time.Minute), model: "m", version: "1", class: 0,
			probs: []float32{1, 0, 0}, latency: time.Millisecond, label: ptr(1.0)}
		reqs = append(reqs, r)
		runs = append(runs, &run{req: r, shadow: "s", version: "2", at: r.at, status: understudy.StatusOK,
			class: 1, probs: []float32{0, 1, 0}, latency: time.Millisecond})
	}
	write(t, db, reqs, runs)
	got, err := report.Build(context.Background(), db, report.Query{Window: "15m"}, report.DefaultThresholds, now)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	c := got.Shadows[0].Verdict.Checks[1]
	assertEqual(t, "Name", c.Name, "agreement")
	assertEqual(t, "Pass", c.Pass, true)
	// Wilson lower bound of 0/12 is 0; McNemar exact p for b=0, c=12 is 2·0.5^12.
	assertEqual(t, "Detail", c.Detail, "agreement 0.0000 (0 of 12 rows); 95% Wilson lower bound 0.0000 is under 0.8000, but the shadow is significantly more accurate (1.0000 vs 0.0000, McNemar p = 0.0004883), so the disagreements are its corrections")
}
