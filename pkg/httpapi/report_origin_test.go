package httpapi_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/understudy-ml/understudy/pkg/httpapi"
	"github.com/understudy-ml/understudy/pkg/report"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// Ensure origin= reaches the report and the pairs export, and that any
// other value than all, live, backfill or backtest is a 400 naming them.
func TestReportOriginParam(t *testing.T) {
	rs := newReportServer(t, nil)
	for _, o := range report.OriginNames {
		if r := get(t, rs.URL+"/api/report?origin="+o); r.status != 200 || rs.query.Origin != o {
			t.Errorf("origin=%s: status %d, query origin %q", o, r.status, rs.query.Origin)
		}
	}
	if get(t, rs.URL+"/api/report?window=24h"); rs.query.Origin != "" {
		t.Errorf("without origin= the query's origin is %q, want empty (all)", rs.query.Origin)
	}
	if r := get(t, rs.URL+"/api/pairs?origin=backfill&format=csv"); r.status != 200 || rs.filter.Origin != "backfill" ||
		!strings.Contains(r.header.Get("Content-Disposition"), "-backfill-") {
		t.Errorf("pairs origin=backfill: status %d, filter origin %q, %s", r.status, rs.filter.Origin, r.header.Get("Content-Disposition"))
	}
	for _, path := range []string{"/api/report?origin=replayed", "/api/report?origin=LIVE", "/api/pairs?origin=replayed"} {
		r := get(t, rs.URL+path)
		var e map[string]string
		if err := json.Unmarshal([]byte(r.body), &e); r.status != 400 || err != nil || e["code"] != understudy.EINVALID {
			t.Fatalf("%s: status %d: %s", path, r.status, r.body)
		}
		if !strings.Contains(e["error"], "origin") || !strings.Contains(e["error"], "all, live, backfill, backtest") {
			t.Errorf("%s: error %q does not name the parameter and its values", path, e["error"])
		}
	}
	r := get(t, rs.URL+"/report?origin=replayed")
	if r.status != 400 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") || !strings.Contains(r.body, "all, live, backfill, backtest") {
		t.Errorf("page: status %d type %q: %.300s", r.status, r.header.Get("Content-Type"), r.body)
	}
}

// originFixture is the fixture report with pairs of every origin, seen
// through the filter backtest.
func originFixture() *report.Report {
	rep := fixtureReport()
	rep.Query.Origin = understudy.OriginBacktest
	sr := &rep.Shadows[0]
	sr.Traffic = report.Traffic{Requests: 60, Live: 30, Backfill: 12, Backtest: 7, SampledOut: 5, Deferred: 16, Pending: 3,
		Dropped: 4, DropReasons: map[string]int64{understudy.DropExpired: 3, understudy.DropBacklogFull: 1}, NotBacktestable: 2,
		Offered: 54, Coverage: 42.0 / 54, LiveCoverage: 30.0 / 54, MirrorRate: 42.0 / 54, DropRate: 4.0 / 54,
		Mirrored: 7, OK: 7}
	sr.Verdict.Pairs, sr.Verdict.LivePairs = 7, 0
	sr.Verdict.Evidence = "0.0% of the evidence is live: only the 7 backtest pairs are judged (origin filter); latency and CPU are judged on the 30 live pairs only."
	sr.Disagreements.Latest[0].Origin = understudy.OriginBacktest
	return rep
}

// Ensure the page shows the traffic by origin, the drops by reason, the
// origin selector with the filter kept in every link, the verdict's
// evidence and the notes on which pairs latency uses.
func TestReportPageOrigins(t *testing.T) {
	rs := newReportServer(t, func(s *httpapi.Server) {
		s.Report = func(context.Context, report.Query) (*report.Report, error) { return originFixture(), nil }
	})
	r := get(t, rs.URL+"/report?origin=backtest&window=1h")
	if r.status != 200 {
		t.Fatalf("status %d: %.300s", r.status, r.body)
	}
	for _, want := range []string{
		`<td class="offered">54</td>`, `<td class="coverage">77.8%</td>`, "live only 55.6%",
		`<td class="live-pairs">30</td>`, `<td class="backfill-pairs">12</td>`, `<td class="pending">3</td>`,
		`<td class="dropped">4</td>`, `<td data-reason="expired">3</td>`, "expired in the backlog", "backlog full",
		`<td class="backtest-pairs">7</td>`, `<td class="not-backtestable">2</td>`,
		`<option value="backtest" selected>backtested</option>`, `<option value="all">all pairs</option>`,
		"The comparison uses <strong>backtest</strong> pairs only",
		"Latency, its chart and the shadow's CPU use live pairs only",
		"0.0% of the evidence is live: only the 7 backtest pairs are judged",
		`href="/report?origin=backtest&amp;window=24h"`,
		"origin=backtest", // in the CSV link
		`<span class="origin origin-backtest">backtest</span>`,
	} {
		if !strings.Contains(r.body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	// Expired (3) is listed before backlog full (1).
	if strings.Index(r.body, "expired in the backlog") > strings.Index(r.body, "backlog full") {
		t.Error("drop reasons are not largest first")
	}

	// An offline report judged latency on backtest runs and says so.
	rs = newReportServer(t, func(s *httpapi.Server) {
		s.Report = func(context.Context, report.Query) (*report.Report, error) {
			rep := originFixture()
			rep.Shadows[0].Latency.Origin = understudy.OriginBacktest
			return rep, nil
		}
	})
	if r := get(t, rs.URL+"/report"); !strings.Contains(r.body, "use backtest pairs: offline CPU times per run on stored traffic") {
		t.Error("the page does not say latency comes from backtest runs")
	}
}
