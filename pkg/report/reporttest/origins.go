package reporttest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/understudy-ml/understudy/pkg/report"
	"github.com/understudy-ml/understudy/pkg/stats"
	"github.com/understudy-ml/understudy/pkg/store"
	"github.com/understudy-ml/understudy/pkg/store/storetest"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// The fates of a request for one shadow version in originScenario: what the
// test does to the store for it, and what the traffic section must count.
const (
	fateLive            = "live"     // a live pair
	fateBackfill        = "backfill" // deferred, then a backfill pair
	fateBacktest        = "backtest" // a backtest pair
	fateSampledOut      = "sampled_out"
	fatePending         = "pending" // deferred, still in the backlog
	fateShed            = understudy.DropShed
	fateBacklogFull     = understudy.DropBacklogFull
	fateExpired         = understudy.DropExpired  // deferred, then dropped
	fateNoInputs        = understudy.DropNoInputs // deferred, then dropped
	fateNotBacktestable = understudy.DropNotBacktestable
)

// offeredFates are the fates of live traffic offered to the shadow: every
// one but backtest and not backtestable.
var offeredFates = []string{fateLive, fateBackfill, fateSampledOut, fatePending, fateShed, fateBacklogFull, fateExpired, fateNoInputs}

// originScenario is 40 requests in the last hour (the last one failed) and
// two shadow versions. s@2 was loaded at request 10: requests 0-9 have
// backtest pairs but request 3, not backtestable; of the later ones every
// fifth is sampled out, some are deferred (then backfilled, pending, or
// dropped), one is shed, one finds the backlog full, and the rest are live
// pairs, one of which failed. b@3 only has backtest pairs (requests 0-19,
// request 3 not backtestable). Classes disagree in a different pattern per
// origin, and latencies and CPU times are of a different scale per origin,
// so that a figure computed over the wrong pairs shows.
func originScenario() (reqs []*req, runs []*run, fates map[string]map[int]string) {
	from := now.Add(-time.Hour).Truncate(time.Minute)
	fates = map[string]map[int]string{"s": {}, "b": {}}
	special := map[int]string{11: fateBackfill, 12: fateBackfill, 13: fateBackfill, 14: fateBackfill, 16: fatePending, 17: fatePending,
		18: fateExpired, 19: fateBacklogFull, 21: fateShed, 22: fateNoInputs}
	for i := range 40 {
		r := &req{id: fmt.Sprintf("o%02d", i), at: from.Add(30*time.Second + time.Duration(i)*85*time.Second), model: "m", version: "1",
			failed: i == 39, class: int64(i % 3), probs: []float32{0.2, 0.3, 0.5},
			latency: time.Duration(400+7*i) * time.Microsecond, cpu: time.Duration(300+5*i) * time.Microsecond}
		l := float64(i % 3)
		if i%5 == 4 {
			l = float64((i + 1) % 3)
		}
		r.label = &l
		reqs = append(reqs, r)
		if r.failed {
			continue
		}
		switch {
		case i == 3:
			fates["s"][i] = fateNotBacktestable
		case i < 10:
			fates["s"][i] = fateBacktest
		case i%5 == 0:
			fates["s"][i] = fateSampledOut
		case special[i] != "":
			fates["s"][i] = special[i]
		default:
			fates["s"][i] = fateLive
		}
		if i < 20 {
			fates["b"][i] = fateBacktest
			if i == 3 {
				fates["b"][i] = fateNotBacktestable
			}
		}
	}
	for _, shadow := range []string{"s", "b"} {
		for i, r := range reqs {
			ru := &run{req: r, shadow: shadow, version: map[string]string{"s": "2", "b": "3"}[shadow], status: understudy.StatusOK,
				class: r.class, probs: []float32{0.2, 0.3 + float32(i%4)/64, 0.5}}
			switch fates[shadow][i] {
			case fateLive:
				ru.origin, ru.at = understudy.OriginLive, r.at.Add(time.Second)
				ru.latency, ru.cpu = time.Duration(500+11*i)*time.Microsecond, time.Duration(450+3*i)*time.Microsecond
				if i%4 == 0 {
					ru.class = (r.class + 1) % 3
				}
				if i == 27 {
					ru.status = understudy.StatusError
				}
			case fateBackfill:
				// Run later, stored at the request's time.
				ru.origin, ru.at = understudy.OriginBackfill, r.at
				ru.latency, ru.cpu = time.Duration(3000+i)*time.Microsecond, 2900*time.Microsecond
				if i == 11 {
					ru.class = (r.class + 2) % 3
				}
			case fateBacktest:
				ru.origin, ru.at = understudy.OriginBacktest, r.at
				ru.latency, ru.cpu = time.Duration(9000+13*i)*time.Microsecond, time.Duration(8000+i)*time.Microsecond
				if i%2 == 0 {
					ru.class = (r.class + 1) % 3
				}
			default:
				continue
			}
			runs = append(runs, ru)
		}
	}
	return reqs, runs, fates
}

// writeOrigins stores originScenario as the server would: the predictions,
// the deferred jobs (Defer), then the pairs (a backfill pair takes its job
// out of the backlog), the drops of deferred jobs (DropDeferred) and the
// other drops and skips (CountDrops, CountSkips), with some outside the
// window that must not count.
func writeOrigins(t *testing.T, db store.Store, reqs []*req, runs []*run, fates map[string]map[int]string) {
	ctx := context.Background()
	from, to := now.Add(-time.Hour).Truncate(time.Minute), now.Truncate(time.Minute).Add(time.Minute)
	before := &req{id: "before", at: from.Add(-time.Minute), model: "m", version: "1", probs: []float32{1, 0, 0}, latency: time.Millisecond}
	queue(db, append([]*req{before}, reqs...), nil)
	db.Defer(understudy.DeferredJob{RequestID: before.id, Shadow: "s", Version: "2", Time: before.at}) // pending, but before the window
	var expired, noInputs []understudy.DeferredJob
	for i, r := range reqs {
		for shadow, version := range map[string]string{"s": "2", "b": "3"} {
			job := understudy.DeferredJob{RequestID: r.id, Shadow: shadow, Version: version, Time: r.at}
			switch fates[shadow][i] {
			case fateBackfill, fatePending:
				db.Defer(job)
			case fateExpired:
				db.Defer(job)
				expired = append(expired, job)
			case fateNoInputs:
				db.Defer(job)
				noInputs = append(noInputs, job)
			case fateSampledOut:
				db.CountSkips(shadow, version, r.at, 1, 0)
			case fateShed:
				db.CountSkips(shadow, version, r.at, 0, 1)
			case fateBacklogFull:
				db.CountDrops(shadow, version, r.at, understudy.DropBacklogFull, 1)
			case fateNotBacktestable:
				db.CountDrops(shadow, version, r.at, understudy.DropNotBacktestable, 1)
			}
		}
	}
	db.CountDrops("s", "2", to, understudy.DropBacklogFull, 50) // after the window
	db.CountSkips("s", "2", from.Add(-time.Second), 50, 50)     // before it
	if err := db.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	queue(db, nil, runs)
	if err := db.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	if err := db.DropDeferred(ctx, expired, understudy.DropExpired); err != nil {
		t.Fatalf("DropDeferred: %v", err)
	}
	if err := db.DropDeferred(ctx, noInputs, understudy.DropNoInputs); err != nil {
		t.Fatalf("DropDeferred: %v", err)
	}
	var labels []understudy.Label
	for _, r := range reqs {
		labels = append(labels, understudy.Label{ID: r.id, Value: *r.label})
	}
	if _, err := db.SetLabels(ctx, labels); err != nil {
		t.Fatalf("SetLabels: %v", err)
	}
	if st := db.Stats(); st.Predictions.Written != int64(len(reqs)+1) || st.ShadowResults.Written != int64(len(runs)) {
		t.Fatalf("written %d predictions and %d shadow results, want %d and %d", st.Predictions.Written, st.ShadowResults.Written, len(reqs)+1, len(runs))
	}
}

// runsOf keeps the runs of one origin; "all" keeps every one.
func runsOf(runs []*run, origin string) []*run {
	var out []*run
	for _, r := range runs {
		if origin == report.OriginAll || r.origin == origin {
			out = append(out, r)
		}
	}
	return out
}

// Ensure the traffic section counts every origin, the skips, the backlog
// and the drops by reason, whatever the origin filter; that the filter
// picks the pairs of agreement, the confusion matrix, accuracy, errors and
// the disagreement lists; that latency and CPU are those of live pairs
// whatever the filter (or of backtest pairs when asked); and that a shadow
// with only backtest pairs is listed, its latency check failing for want
// of live pairs.
func testBuildOrigins(t *testing.T, open storetest.Opener) {
	db := open(t)
	ctx := context.Background()
	reqs, runs, fates := originScenario()
	writeOrigins(t, db, reqs, runs, fates)
	from, to := now.Add(-time.Hour).Truncate(time.Minute), now.Truncate(time.Minute).Add(time.Minute)

	_, err := report.Build(ctx, db, report.Query{Window: "1h", Origin: "replayed"}, report.DefaultThresholds, now)
	if understudy.ErrorCode(err) != understudy.EINVALID || !strings.Contains(understudy.ErrorMessage(err), "all, live, backfill, backtest") {
		t.Errorf("origin replayed: %v, want EINVALID naming the origins", err)
	}

	for _, origin := range report.OriginNames {
		t.Run(origin, func(t *testing.T) {
			got, err := report.Build(ctx, db, report.Query{Window: "1h", Origin: origin, Tolerance: report.DefaultTolerance}, report.DefaultThresholds, now)
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			assertEqual(t, "Query.Origin", got.Query.Origin, origin)
			assertEqual(t, "Versions", fmt.Sprint(got.Versions), "[{b 3} {s 2}]")
			if len(got.Shadows) != 2 {
				t.Fatalf("%d shadows, want b@3 and s@2 whatever the filter", len(got.Shadows))
			}
			for _, sr := range got.Shadows {
				t.Run(sr.Name, func(t *testing.T) {
					checkOriginTraffic(t, &sr, fates[sr.Name])
					filtered := runsOf(runs, origin)
					e := expect(reqs, filtered, sr.Name, from, to)
					checkOriginComparison(t, &sr, e, origin)
					checkLiveLatency(t, &sr, expect(reqs, runsOf(runs, understudy.OriginLive), sr.Name, from, to))
					live := int64(0)
					if origin == report.OriginAll || origin == understudy.OriginLive {
						live = int64(len(runsOf(expectRuns(filtered, sr.Name), understudy.OriginLive)))
					}
					v := sr.Verdict
					assertEqual(t, "Verdict.Pairs", v.Pairs, e.mirrored)
					assertEqual(t, "Verdict.LivePairs", v.LivePairs, live)
					assertEqual(t, "Verdict.LiveShare", v.LiveShare, fracOf(live, e.mirrored))
					assertEqual(t, "Evidence", v.Evidence != "", true)
				})
			}
		})
	}

	// An offline tool judges latency on backtest runs.
	got, err := report.Build(ctx, db, report.Query{Window: "1h", LatencyOrigin: understudy.OriginBacktest}, report.DefaultThresholds, now)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	for _, sr := range got.Shadows {
		e := expect(reqs, runsOf(runs, understudy.OriginBacktest), sr.Name, from, to)
		assertEqual(t, sr.Name+" Latency.Origin", sr.Latency.Origin, understudy.OriginBacktest)
		assertEqual(t, sr.Name+" Latency.N", sr.Latency.N, e.ok)
		assertEqual(t, sr.Name+" ShadowP99", sr.Latency.ShadowP99, stats.Percentiles(e.shadowLat, 0.99)[0])
		assertEqual(t, sr.Name+" PrimaryP50", sr.Latency.PrimaryP50, stats.Percentiles(e.primaryLat, 0.5)[0])
		assertClose(t, sr.Name+" ShadowCPUUS", sr.Resources.ShadowCPUUS, mean(e.shadowCPU), rel)
		c := sr.Verdict.Checks[2]
		assertEqual(t, sr.Name+" latency check", c.Name, "latency")
		assertEqual(t, sr.Name+" latency detail is offline", strings.Contains(c.Detail, "offline CPU times per run on stored traffic"), true)
	}
	if _, err := report.Build(ctx, db, report.Query{Window: "1h", LatencyOrigin: "all"}, report.DefaultThresholds, now); understudy.ErrorCode(err) != understudy.EINVALID {
		t.Errorf("latency origin all: %v, want EINVALID", err)
	}

	// The pairs export keeps the origin it is asked for.
	ps, err := report.Pairs(ctx, db, report.PairFilter{Shadow: "s", Origin: understudy.OriginBackfill})
	if err != nil {
		t.Fatalf("Pairs: %v", err)
	}
	var want []string
	for i := len(reqs) - 1; i >= 0; i-- {
		if fates["s"][i] == fateBackfill {
			want = append(want, reqs[i].id)
		}
	}
	assertEqual(t, "backfill pairs", strings.Join(pairIDs(ps), " "), strings.Join(want, " "))
	for _, p := range ps {
		assertEqual(t, p.RequestID+" origin", p.Origin, understudy.OriginBackfill)
	}
	if _, err := report.Pairs(ctx, db, report.PairFilter{Origin: "x"}); understudy.ErrorCode(err) != understudy.EINVALID {
		t.Errorf("pairs of origin x: %v, want EINVALID", err)
	}
}

// expectRuns keeps one shadow's runs.
func expectRuns(runs []*run, shadow string) []*run {
	var out []*run
	for _, r := range runs {
		if r.shadow == shadow {
			out = append(out, r)
		}
	}
	return out
}

func fracOf(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// checkOriginTraffic compares the traffic section with the requests'
// fates, counted here.
func checkOriginTraffic(t *testing.T, sr *report.ShadowReport, fates map[int]string) {
	t.Helper()
	n := map[string]int64{}
	for _, f := range fates {
		n[f]++
	}
	var offered int64
	for _, f := range offeredFates {
		offered += n[f]
	}
	tr := sr.Traffic
	assertEqual(t, "Requests", tr.Requests, 40)
	assertEqual(t, "PrimaryErrorRate", tr.PrimaryErrorRate, 1.0/40)
	assertEqual(t, "Live", tr.Live, n[fateLive])
	assertEqual(t, "Backfill", tr.Backfill, n[fateBackfill])
	assertEqual(t, "Backtest", tr.Backtest, n[fateBacktest])
	assertEqual(t, "SampledOut", tr.SampledOut, n[fateSampledOut])
	assertEqual(t, "Deferred", tr.Deferred, n[fateBackfill]+n[fatePending]+n[fateExpired]+n[fateNoInputs])
	assertEqual(t, "Pending", tr.Pending, n[fatePending])
	wantReasons := map[string]int64{}
	for _, f := range []string{fateShed, fateBacklogFull, fateExpired, fateNoInputs} {
		if n[f] > 0 {
			wantReasons[f] = n[f]
		}
	}
	assertEqual(t, "DropReasons", fmt.Sprint(tr.DropReasons), fmt.Sprint(wantReasons))
	var dropped int64
	for _, n := range wantReasons {
		dropped += n
	}
	assertEqual(t, "Dropped", tr.Dropped, dropped)
	assertEqual(t, "NotBacktestable", tr.NotBacktestable, n[fateNotBacktestable])
	assertEqual(t, "Offered", tr.Offered, offered)
	assertEqual(t, "Coverage", tr.Coverage, fracOf(n[fateLive]+n[fateBackfill], offered))
	assertEqual(t, "LiveCoverage", tr.LiveCoverage, fracOf(n[fateLive], offered))
	assertEqual(t, "DropRate", tr.DropRate, fracOf(dropped, offered))
	if sr.Name == "s" {
		// Every successful request from the tenth on was offered, once.
		assertEqual(t, "s offered", offered, 29)
		assertEqual(t, "s fates", fmt.Sprint(n[fateLive], n[fateBackfill], n[fateBacktest], n[fatePending], dropped), "13 4 9 2 4")
	}
}

// checkOriginComparison compares the figures the origin filter selects with
// e, computed from the filter's runs.
func checkOriginComparison(t *testing.T, sr *report.ShadowReport, e *expectation, origin string) {
	t.Helper()
	tr := sr.Traffic
	assertEqual(t, "Mirrored", tr.Mirrored, e.mirrored)
	assertEqual(t, "OK", tr.OK, e.ok)
	assertEqual(t, "Errors", tr.Errors, e.errors)
	assertEqual(t, "ErrorRate", tr.ErrorRate, fracOf(e.errors, e.mirrored))
	c := sr.Classification
	if e.classRows == 0 {
		if c != nil {
			t.Errorf("a Classification of %d pairs without pairs of origin %s", c.Pairs, origin)
		}
	} else if c == nil {
		t.Errorf("no Classification; want %d pairs", e.classRows)
	} else {
		assertEqual(t, "class pairs", c.Pairs, e.classRows)
		assertEqual(t, "Agree", c.Agree, e.agree)
		assertEqual(t, "Agreement", c.Agreement, float64(e.agree)/float64(e.classRows))
		assertEqual(t, "Confusion", fmt.Sprint(c.Confusion), fmt.Sprint(e.confusion))
		assertEqual(t, "Kappa", c.Kappa, stats.CohensKappa(e.confusion))
		var points float64
		for _, p := range sr.Charts.Agreement {
			points += p.B
		}
		assertEqual(t, "pairs in the agreement chart", int64(points), e.classRows)
	}
	a := sr.Accuracy
	if e.labelled == 0 {
		if a != nil {
			t.Errorf("Accuracy over %d labels without pairs of origin %s", a.Labelled, origin)
		}
	} else if a == nil {
		t.Errorf("no Accuracy; want %d labels", e.labelled)
	} else {
		assertEqual(t, "Labelled", a.Labelled, e.labelled)
		assertEqual(t, "PrimaryCorrect", a.PrimaryCorrect, e.primaryCorrect)
		assertEqual(t, "ShadowCorrect", a.ShadowCorrect, e.shadowCorrect)
		assertEqual(t, "B", a.B, e.b)
		assertEqual(t, "C", a.C, e.c)
		assertEqual(t, "McNemarP", a.McNemarP, stats.McNemarExact(e.b, e.c))
	}
	var want []string
	for _, r := range e.disagreements {
		want = append(want, r.req.id)
	}
	assertEqual(t, "Latest", strings.Join(pairIDs(sr.Disagreements.Latest), " "), strings.Join(want[:min(report.Listed, len(want))], " "))
	for _, p := range append(sr.Disagreements.Latest, sr.Disagreements.Largest...) {
		if origin != report.OriginAll && p.Origin != origin {
			t.Errorf("pair %s of origin %s listed under the filter %s", p.RequestID, p.Origin, origin)
		}
	}
}

// checkLiveLatency compares latency, its chart, CPU and the latency check
// with e, computed from the live runs only.
func checkLiveLatency(t *testing.T, sr *report.ShadowReport, e *expectation) {
	t.Helper()
	l := sr.Latency
	assertEqual(t, "Latency.Origin", l.Origin, understudy.OriginLive)
	assertEqual(t, "Latency.N", l.N, e.ok)
	assertEqual(t, "latency points", len(sr.Charts.Latency), int(e.ok))
	check := sr.Verdict.Checks[2]
	assertEqual(t, "check", check.Name, "latency")
	if e.ok == 0 {
		assertEqual(t, "ShadowP99", l.ShadowP99, 0.0)
		assertEqual(t, "ShadowCPUUS", sr.Resources.ShadowCPUUS, 0.0)
		assertEqual(t, "latency check", fmt.Sprint(check.Pass, " ", check.Detail), "false no live pairs yet: latency is only judged on live traffic")
		return
	}
	pp := stats.Percentiles(e.primaryLat, 0.5, 0.95, 0.99)
	sp := stats.Percentiles(e.shadowLat, 0.5, 0.95, 0.99)
	assertEqual(t, "PrimaryP50", l.PrimaryP50, pp[0])
	assertEqual(t, "PrimaryP99", l.PrimaryP99, pp[2])
	assertEqual(t, "ShadowP50", l.ShadowP50, sp[0])
	assertEqual(t, "ShadowP95", l.ShadowP95, sp[1])
	assertEqual(t, "ShadowP99", l.ShadowP99, sp[2])
	assertEqual(t, "RatioP99", l.RatioP99, sp[2]/pp[2])
	assertClose(t, "ShadowCPUUS", sr.Resources.ShadowCPUUS, mean(e.shadowCPU), rel)
	assertEqual(t, "latency check", check.Pass, sp[2]/pp[2] <= report.DefaultThresholds.MaxLatencyRatio)
	assertEqual(t, "latency detail", strings.Contains(check.Detail, fmt.Sprintf("over %d live pairs", e.ok)), true)
}
