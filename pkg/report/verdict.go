package report

import (
	"fmt"
	"math"

	"github.com/understudy-ml/understudy/pkg/stats"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// This file judges a shadow against the Thresholds: the checks of the
// verdict (pairs, agreement, latency, errors, accuracy) and their details.

// verdict checks the shadow against the thresholds, in a fixed order: pairs,
// agreement, latency, errors, accuracy.
func verdict(sr *ShadowReport, th Thresholds) Verdict {
	t := &sr.Traffic
	checks := []Check{}
	add := func(name string, pass bool, format string, args ...any) {
		checks = append(checks, Check{Name: name, Pass: pass, Detail: fmt.Sprintf(format, args...)})
	}

	add("pairs", t.OK >= th.MinPairs, "%d compared pairs (need at least %d)", t.OK, th.MinPairs)

	switch c, g := sr.Classification, sr.Regression; {
	case c != nil && c.WilsonLow < th.MinAgreement && significantlyBetter(sr.Accuracy, th):
		// Disagreeing with a primary that is wrong is the point of a better
		// model; low agreement only matters without evidence that it is.
		a := sr.Accuracy
		add("agreement", true,
			"agreement %.4f (%d of %d rows); 95%% Wilson lower bound %.4f is under %.4f, but the shadow is significantly more accurate (%.4f vs %.4f, McNemar p = %.4g), so the disagreements are its corrections",
			c.Agreement, c.Agree, c.Pairs, c.WilsonLow, th.MinAgreement, a.ShadowAcc, a.PrimaryAcc, a.McNemarP)
	case c != nil:
		add("agreement", c.WilsonLow >= th.MinAgreement,
			"agreement %.4f (%d of %d rows); 95%% Wilson lower bound %.4f (need at least %.4f)",
			c.Agreement, c.Agree, c.Pairs, c.WilsonLow, th.MinAgreement)
	case g != nil:
		within := int(math.Round(g.WithinTol * float64(g.Pairs)))
		lo, _ := stats.Wilson(within, int(g.Pairs), stats.Z95)
		add("agreement", lo >= th.MinAgreement,
			"no class output: %.4f of %d pairs within |Δ| ≤ %g; 95%% Wilson lower bound %.4f (need at least %.4f)",
			g.WithinTol, g.Pairs, g.Tolerance, lo, th.MinAgreement)
	default:
		add("agreement", false, "no compared outputs: neither a class nor a float output could be compared")
	}

	// Latency is judged on one origin's pairs, live unless an offline
	// tool asked otherwise (Query.LatencyOrigin); the ratio is 0 only when
	// one side has no latencies.
	l := &sr.Latency
	switch o := l.Origin; {
	case o == understudy.OriginLive && t.Live == 0:
		add("latency", false, "no live pairs yet: latency is only judged on live traffic")
	case originPairs(t, o) == 0:
		add("latency", false, "no %s pairs: latency is judged here on %s runs", o, o)
	case l.RatioP99 == 0:
		add("latency", false, "no latencies of ok %s pairs with the primary's latency", o)
	case o == understudy.OriginLive:
		add("latency", l.RatioP99 <= th.MaxLatencyRatio, "p99 %s vs primary %s over %d live pairs: ratio %.3f (need at most %.3f)",
			Micros(l.ShadowP99), Micros(l.PrimaryP99), l.N, l.RatioP99, th.MaxLatencyRatio)
	default:
		add("latency", l.RatioP99 <= th.MaxLatencyRatio, "p99 %s vs primary %s over %d %s pairs: ratio %.3f (need at most %.3f); the latencies are offline CPU times per run on stored traffic, not live ones",
			Micros(l.ShadowP99), Micros(l.PrimaryP99), l.N, o, l.RatioP99, th.MaxLatencyRatio)
	}

	if t.Mirrored == 0 {
		add("errors", false, "no mirrored requests")
	} else {
		rate := ratio(t.Errors+t.Timeouts, t.Mirrored)
		limit := t.PrimaryErrorRate + th.MaxErrorRateIncrease
		add("errors", rate <= limit, "%d errors and %d timeouts in %d runs: %.4f%% (need at most %.4f%%: primary %.4f%% + %.4f%%)",
			t.Errors, t.Timeouts, t.Mirrored, 100*rate, 100*limit, 100*t.PrimaryErrorRate, 100*th.MaxErrorRateIncrease)
	}

	// Too few labels cannot show a difference, so they pass: the check
	// stops a shadow that is measurably worse, it does not demand labels.
	a := sr.Accuracy
	switch {
	case a == nil:
		add("accuracy", true, "not enough labels: no labelled pairs (the check needs %d)", MinLabelled)
	case a.Compared < MinLabelled:
		add("accuracy", true, "not enough labels: %d labelled pairs, %d comparable (the check needs %d)", a.Labelled, a.Compared, MinLabelled)
	case a.Numeric:
		worse := a.ShadowMAE > a.PrimaryMAE && a.McNemarP < th.Alpha
		add("accuracy", !worse, "MAE against %d numeric labels: shadow %.6g, primary %.6g; shadow closer on %d, primary on %d; sign test p = %.4g (fail when worse and p < %g)",
			a.Compared, a.ShadowMAE, a.PrimaryMAE, a.C, a.B, a.McNemarP, th.Alpha)
	default:
		worse := a.ShadowAcc < a.PrimaryAcc && a.McNemarP < th.Alpha
		add("accuracy", !worse, "accuracy on %d labelled pairs: shadow %.4f, primary %.4f; only the primary right %d, only the shadow right %d; McNemar p = %.4g (fail when worse and p < %g)",
			a.Labelled, a.ShadowAcc, a.PrimaryAcc, a.B, a.C, a.McNemarP, th.Alpha)
	}

	ready := true
	for _, c := range checks {
		ready = ready && c.Pass
	}
	return Verdict{Ready: ready, Checks: checks}
}

// significantlyBetter reports whether labelled class pairs show the shadow
// more accurate than the primary at the thresholds' significance level.
func significantlyBetter(a *Accuracy, th Thresholds) bool {
	return a != nil && !a.Numeric && a.Compared >= MinLabelled && a.ShadowAcc > a.PrimaryAcc && a.McNemarP < th.Alpha
}

// Micros formats a latency in microseconds for people: µs, ms or s.
func Micros(us float64) string {
	switch {
	case us >= 1e6:
		return fmt.Sprintf("%.3g s", us/1e6)
	case us >= 1e3:
		return fmt.Sprintf("%.3g ms", us/1e3)
	}
	return fmt.Sprintf("%.3g µs", us)
}
