package reporttest

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/understudy-ml/understudy/pkg/report"
	"github.com/understudy-ml/understudy/pkg/stats"
)

func checkClassifier(t *testing.T, sr *report.ShadowReport, e *expectation, th report.Thresholds) {
	t.Helper()
	assertEqual(t, "SampledOut", sr.Traffic.SampledOut, 0)
	assertEqual(t, "Dropped", sr.Traffic.Dropped, 3)
	// Over what was offered: the runs stored and the 3 dropped.
	assertEqual(t, "DropRate", sr.Traffic.DropRate, 3.0/float64(e.mirrored+3))

	c := sr.Classification
	if c == nil {
		t.Fatal("no Classification")
	}
	assertEqual(t, "Output", c.Output, "label")
	assertEqual(t, "class pairs", c.Pairs, e.classRows)
	assertEqual(t, "Agree", c.Agree, e.agree)
	assertEqual(t, "(pairs, agree)", fmt.Sprint(c.Pairs, c.Agree), "35 29")
	assertEqual(t, "Agreement", c.Agreement, 29.0/35)
	lo, hi := stats.Wilson(29, 35, stats.Z95)
	assertEqual(t, "WilsonLow", c.WilsonLow, lo)
	assertEqual(t, "WilsonHigh", c.WilsonHigh, hi)
	assertEqual(t, "Classes", fmt.Sprint(c.Classes), fmt.Sprint(e.classes))
	assertEqual(t, "Confusion", fmt.Sprint(c.Confusion), fmt.Sprint(e.confusion))
	assertEqual(t, "Kappa", c.Kappa, stats.CohensKappa(e.confusion))
	assertEqual(t, "Regression.Output", sr.Regression.Output, "probabilities")

	// PSI of the predicted classes: primary expected, shadow actual.
	expected, actual := make([]float64, len(e.classes)), make([]float64, len(e.classes))
	for i := range e.confusion {
		for j, n := range e.confusion[i] {
			expected[i] += float64(n)
			actual[j] += float64(n)
		}
	}
	if sr.Drift.PSI == nil {
		t.Fatal("no PSI")
	}
	assertEqual(t, "PSI", *sr.Drift.PSI, stats.PSI(expected, actual, 1e-4))

	// Accuracy as classes: 13 labels, 12 of them on ok pairs (r11's run
	// failed); r1 and r5 have the primary wrong and the shadow right, r14
	// the reverse, r9 both wrong.
	a := sr.Accuracy
	if a == nil {
		t.Fatal("no Accuracy")
	}
	assertEqual(t, "Labelled", a.Labelled, e.labelled)
	assertEqual(t, "(labelled, b, c)", fmt.Sprint(a.Labelled, a.B, a.C), "12 1 2")
	assertEqual(t, "Numeric", a.Numeric, false)
	assertEqual(t, "Compared", a.Compared, e.labelled)
	assertEqual(t, "PrimaryCorrect", a.PrimaryCorrect, e.primaryCorrect)
	assertEqual(t, "ShadowCorrect", a.ShadowCorrect, e.shadowCorrect)
	assertEqual(t, "PrimaryAcc", a.PrimaryAcc, float64(e.primaryCorrect)/float64(e.labelled))
	assertEqual(t, "ShadowAcc", a.ShadowAcc, float64(e.shadowCorrect)/float64(e.labelled))
	assertEqual(t, "B", a.B, e.b)
	assertEqual(t, "C", a.C, e.c)
	// By hand: 2·P[X ≤ 1], X ~ Binomial(3, ½) = 2·4/8 = 1.
	assertEqual(t, "McNemarP", a.McNemarP, 1.0)

	assertEqual(t, "ShadowCPUUS", sr.Resources.ShadowCPUUS, mean(e.shadowCPU))
	assertEqual(t, "ShadowFileSize", sr.Resources.ShadowFileSize, 2000)
	assertEqual(t, "ShadowMemory", sr.Resources.ShadowMemory, 7000)

	// Agreement per minute: one pair a minute at most.
	var points int
	for _, p := range sr.Charts.Agreement {
		points++
		assertEqual(t, "pairs at "+p.Time.Format("15:04"), p.B, 1.0)
	}
	assertEqual(t, "agreement points", int64(points), e.classRows)

	// Latest disagreements: the 9 there are (3 failed runs, 6 classes),
	// newest first.
	var want []string
	for _, r := range e.disagreements {
		want = append(want, r.req.id)
	}
	assertEqual(t, "Latest", strings.Join(pairIDs(sr.Disagreements.Latest), " "), strings.Join(want, " "))
	assertEqual(t, "Latest count", len(sr.Disagreements.Latest), 9)

	l := sr.Latency
	errRate := float64(e.errors+e.timeouts) / float64(e.mirrored)
	wantChecks := []report.Check{
		{Name: "pairs", Pass: true},
		{Name: "agreement", Pass: c.WilsonLow >= th.MinAgreement},
		{Name: "latency", Pass: l.RatioP99 <= th.MaxLatencyRatio},
		{Name: "errors", Pass: errRate <= 2.0/40+th.MaxErrorRateIncrease},
		{Name: "accuracy", Pass: true},
	}
	checkVerdict(t, sr.Verdict, wantChecks)
	assertEqual(t, "agreement passes", wantChecks[1].Pass, true) // lo ≈ 0.66
	assertEqual(t, "latency fails", wantChecks[2].Pass, false)   // ratio ≈ 1.7
	assertEqual(t, "errors pass", wantChecks[3].Pass, true)      // 3/38 ≈ 7.9% ≤ 10%
}

func checkRegression(t *testing.T, sr *report.ShadowReport, e *expectation, th report.Thresholds, tol float64) {
	t.Helper()
	assertEqual(t, "SampledOut", sr.Traffic.SampledOut, 18)
	assertEqual(t, "Dropped", sr.Traffic.Dropped, 0)
	assertEqual(t, "Mirrored", sr.Traffic.Mirrored, 20)
	if sr.Classification != nil {
		t.Error("a regression shadow has a Classification")
	}
	assertEqual(t, "Regression.Output", sr.Regression.Output, "value")
	if sr.Drift.PSI != nil {
		t.Error("PSI without classes")
	}
	assertEqual(t, "ShadowCPUUS", sr.Resources.ShadowCPUUS, 0.0)
	assertEqual(t, "ShadowMemory", sr.Resources.ShadowMemory, 0)

	// Accuracy as numbers: the labels are whole, but the shadow has no
	// class output, so both are scored by their first output value.
	a := sr.Accuracy
	if a == nil {
		t.Fatal("no Accuracy")
	}
	assertEqual(t, "Numeric", a.Numeric, true)
	assertEqual(t, "Labelled", a.Labelled, e.labelled)
	assertEqual(t, "Compared", a.Compared, e.labelled)
	assertClose(t, "PrimaryMAE", a.PrimaryMAE, e.primaryAbsErr/float64(e.labelled), rel)
	assertClose(t, "ShadowMAE", a.ShadowMAE, e.shadowAbsErr/float64(e.labelled), rel)
	assertEqual(t, "B", a.B, e.b)
	assertEqual(t, "C", a.C, e.c)
	assertEqual(t, "McNemarP", a.McNemarP, stats.McNemarExact(e.b, e.c))

	// Without a class output the agreement series is the share within the
	// tolerance, and a disagreement is a max|Δ| above it.
	var want []string
	for i := len(e.floatRuns) - 1; i >= 0; i-- {
		if r := e.floatRuns[i]; maxAbs(diffs(r)) > tol {
			want = append(want, r.req.id)
		}
	}
	assertEqual(t, "Latest", strings.Join(pairIDs(sr.Disagreements.Latest), " "), strings.Join(want[:min(20, len(want))], " "))
	for _, p := range sr.Charts.Agreement {
		within := 0.0
		for _, r := range e.floatRuns {
			if r.at.Truncate(time.Minute).Equal(p.Time) && maxAbs(diffs(r)) <= tol {
				within = 1
			}
		}
		assertEqual(t, "within at "+p.Time.Format("15:04"), p.A, within)
	}

	within := 0
	for _, x := range e.pairDiffs {
		if x <= tol {
			within++
		}
	}
	wlo, _ := stats.Wilson(within, len(e.pairDiffs), stats.Z95)
	wantChecks := []report.Check{
		{Name: "pairs", Pass: false},
		{Name: "agreement", Pass: wlo >= th.MinAgreement},
		{Name: "latency", Pass: sr.Latency.RatioP99 <= th.MaxLatencyRatio},
		{Name: "errors", Pass: true},
		{Name: "accuracy", Pass: !(a.ShadowMAE > a.PrimaryMAE && a.McNemarP < th.Alpha)},
	}
	checkVerdict(t, sr.Verdict, wantChecks)
}

func checkVerdict(t *testing.T, got report.Verdict, want []report.Check) {
	t.Helper()
	ready := true
	for i, c := range want {
		ready = ready && c.Pass
		if i >= len(got.Checks) {
			t.Errorf("check %s missing", c.Name)
			continue
		}
		g := got.Checks[i]
		if g.Name != c.Name || g.Pass != c.Pass {
			t.Errorf("check %d = %s pass=%v (%s), want %s pass=%v", i, g.Name, g.Pass, g.Detail, c.Name, c.Pass)
		}
		if g.Detail == "" {
			t.Errorf("check %s has no detail", g.Name)
		}
	}
	assertEqual(t, "checks", len(got.Checks), len(want))
	assertEqual(t, "Ready", got.Ready, ready)
}
