package httpapi_test

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/understudy-ml/understudy/pkg/httpapi"
	"github.com/understudy-ml/understudy/pkg/report"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

func fp(v float64) *float64 { return &v }
func ip(v int64) *int64     { return &v }

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

const xss = `<script>alert("x")</script>`

// fixtureReport is a report as report.Build would return it, with hostile
// strings wherever a payload or a file name can reach the page.
func fixtureReport() *report.Report {
	pair := func(id string, minute int, p, s int64, diff float64) report.Pair {
		return report.Pair{
			RequestID: id, Time: t0.Add(time.Duration(minute) * time.Minute), Shadow: "iris-v2", Version: "bbbbbbbbbbbb",
			PrimaryModel: "iris-v1", PrimaryVersion: "aaaaaaaaaaaa", PrimaryClass: ip(p), ShadowClass: ip(s),
			Agreement: fp(0), MaxAbsDiff: fp(diff), Status: "ok", Label: fp(float64(p)),
			Inputs:        `{"input":{"dtype":"float32","shape":[1,4],"data":[[5.1,3.5,1.4,0.2]]},"note":{"dtype":"string","shape":[1],"data":["` + strings.ReplaceAll(xss, `"`, `\"`) + `"]}}`,
			PrimaryOutput: `{"label":{"dtype":"int64","shape":[1],"data":[1]},"probabilities":{"dtype":"float32","shape":[1,3],"data":[[0.012345678,0.61,0.377654322]]}}`,
			ShadowOutput:  `{"label":{"dtype":"int64","shape":[1],"data":[2]},"probabilities":{"dtype":"float32","shape":[1,3],"data":[[0.01,0.3,0.69]]}}`,
		}
	}
	var agreement, latency []report.Point
	for i := range 6 {
		ts := t0.Add(time.Duration(10*i) * time.Minute)
		agreement = append(agreement, report.Point{Time: ts, A: 0.7 + 0.03*float64(i), B: 8})
		latency = append(latency, report.Point{Time: ts, A: 180 + float64(i), B: 240 + 3*float64(i)})
	}
	return &report.Report{
		GeneratedAt: t0.Add(time.Hour), Query: report.Query{Window: "1h", Tolerance: 1e-4},
		From: t0, To: t0.Add(time.Hour), Thresholds: report.DefaultThresholds,
		Primary:  understudy.ModelRef{Name: "iris-v1", Version: "aaaaaaaaaaaa"},
		Requests: 50,
		Versions: []understudy.ModelRef{{Name: "iris-v2", Version: "bbbbbbbbbbbb"}, {Name: "iris-v2", Version: "cccccccccccc"}},
		Events: []understudy.Event{
			{Time: t0, Kind: understudy.EventLoaded, Model: "iris-v2", Version: "bbbbbbbbbbbb", Actor: "startup", Detail: "event " + xss},
		},
		Shadows: []report.ShadowReport{{
			Name: "iris-v2", Version: "bbbbbbbbbbbb",
			PrimaryVersions: []understudy.ModelRef{{Name: "iris-v1", Version: "aaaaaaaaaaaa"}},
			Traffic: report.Traffic{Requests: 50, Mirrored: 50, OK: 49, Errors: 1, MirrorRate: 1, ErrorRate: 0.02,
				SampledOut: 0, Dropped: 0, Timeouts: 0, PrimaryErrorRate: 0},
			Classification: &report.Classification{Output: "label", Pairs: 50, Agree: 40, Agreement: 0.8,
				WilsonLow: 0.66959, WilsonHigh: 0.88758, Kappa: 0.69951,
				Classes: []int64{0, 1, 2}, Confusion: [][]int64{{16, 1, 0}, {2, 12, 3}, {0, 4, 12}}},
			Accuracy: &report.Accuracy{Labelled: 45, Compared: 45, PrimaryCorrect: 42, ShadowCorrect: 40, PrimaryAcc: 42.0 / 45, ShadowAcc: 40.0 / 45,
				B: 4, C: 2, McNemarP: 0.6875},
			Latency: report.Latency{N: 50, PrimaryP50: 182, PrimaryP95: 250, PrimaryP99: 310, ShadowP50: 245, ShadowP95: 400, ShadowP99: 1250,
				RatioP50: 245.0 / 182, RatioP99: 1250.0 / 310, Exact: true},
			Drift:     report.Drift{PSI: fp(0.01234), KSD: fp(0.18), KSP: fp(0.33214), KSSamples: 50},
			Resources: report.Resources{PrimaryFileSize: 2048, ShadowFileSize: 3 << 20, PrimaryMemory: 5 << 20, ShadowMemory: 7 << 20, PrimaryCPUUS: 95, ShadowCPUUS: 130},
			Charts: report.Charts{Agreement: agreement, Latency: latency,
				DiffHist: []report.Bin{{Lo: 0, Hi: 0.01, Count: 30}, {Lo: 0.01, Hi: 0.1, Count: 12}, {Lo: 0.1, Hi: 1, Count: 8}}},
			Disagreements: report.Disagreements{
				Latest:  []report.Pair{pair("req/1?x="+xss, 50, 1, 2, 0.31)},
				Largest: []report.Pair{pair("req-2", 40, 2, 1, 0.62)},
			},
			Verdict: report.Verdict{Ready: false, Checks: []report.Check{
				{Name: "enough pairs", Pass: true, Detail: "50 ≥ 30"},
				{Name: "agreement", Pass: false, Detail: "lower bound 0.6696 < 0.80"},
				{Name: "latency", Pass: false, Detail: "p99 ratio 4.03 > 1.50"},
			}},
		}},
	}
}

func fixtureDetail() *report.RequestDetail {
	return &report.RequestDetail{
		RequestID: "req-2", Time: t0, Model: "iris-v1", Version: "aaaaaaaaaaaa", Status: "ok", LatencyUS: 180,
		Inputs:       `{"input":{"dtype":"float32","shape":[1,4],"data":[[6.3,2.8,5.1,1.5]]},"note":{"dtype":"string","shape":[1],"data":["` + strings.ReplaceAll(xss, `"`, `\"`) + `"]}}`,
		InputsSHA256: "ab12", InputsSize: 60,
		Outputs: `{"label":{"dtype":"int64","shape":[1],"data":[2]}}`,
		Label:   fp(1),
		Shadows: []report.ShadowDetail{{Shadow: "iris-v2", Version: "bbbbbbbbbbbb", PrimaryModel: "iris-v1", PrimaryVersion: "aaaaaaaaaaaa",
			Time: t0, Status: "ok", LatencyUS: 240, PrimaryLatencyUS: fp(181), CPUUS: 200, Outputs: `{"label":{"dtype":"int64","shape":[1],"data":[1]}}`,
			Comparison: understudy.Comparison{Agreement: fp(0), PrimaryClass: ip(2), ShadowClass: ip(1),
				Outputs: []understudy.OutputComparison{{Name: "label", Kind: understudy.KindClass, Rows: 1, Agree: 0}}}}},
	}
}

// reportServer serves the fixtures; it records the last query and filter.
type reportServer struct {
	*httptest.Server
	query  report.Query
	filter report.PairFilter
}

func newReportServer(tb testing.TB, adjust func(*httpapi.Server)) *reportServer {
	tb.Helper()
	rs := &reportServer{}
	s := &httpapi.Server{
		Log: zerolog.New(zerolog.NewTestWriter(tb)).Level(zerolog.ErrorLevel),
		Now: func() time.Time { return t0.Add(time.Hour) },
		Report: func(_ context.Context, q report.Query) (*report.Report, error) {
			rs.query = q
			return fixtureReport(), nil
		},
		Pairs: func(_ context.Context, f report.PairFilter) ([]report.Pair, error) {
			rs.filter = f
			r := fixtureReport().Shadows[0].Disagreements
			return append(r.Latest, r.Largest...), nil
		},
		Request: func(_ context.Context, id string) (*report.RequestDetail, error) {
			if id != "req-2" {
				return nil, understudy.Errorf(understudy.ENOTFOUND, "no stored request with id %q", id)
			}
			return fixtureDetail(), nil
		},
	}
	if adjust != nil {
		adjust(s)
	}
	rs.Server = httptest.NewServer(s.Handler())
	tb.Cleanup(rs.Close)
	return rs
}

type result struct {
	status int
	header http.Header
	body   string
}

// get fetches path without following redirects, with optional headers as
// name, value pairs.
func get(tb testing.TB, url string, header ...string) result {
	tb.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		tb.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return result{resp.StatusCode, resp.Header, string(b)}
}

// Ensure the page shows the report's numbers exactly as formatted: the
// agreement with its Wilson bounds, kappa, every confusion cell, accuracy,
// latency, drift and resources.
func TestReportPageNumbers(t *testing.T) {
	rs := newReportServer(t, nil)
	r := get(t, rs.URL+"/report")
	if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") {
		t.Fatalf("status %d, type %q: %.300s", r.status, r.header.Get("Content-Type"), r.body)
	}
	for _, want := range []string{
		"iris-v1", "@aaaaaaaaaaaa", "iris-v2", "@bbbbbbbbbbbb",
		`<span class="value agreement">0.8000</span>`,
		`<span class="wilson-low">0.6696</span>`, `<span class="wilson-high">0.8876</span>`,
		`<td class="kappa">0.6995</td>`,
		"40 of 50",
		`<span class="primary-acc">0.9333</span>`, `<span class="shadow-acc">0.8889</span>`, `<td class="mcnemar">0.6875</td>`,
		"182 µs", "1.25 ms", "1.35×", "4.03×",
		`<span class="psi">0.0123</span>`, "stable", `<td class="ks-d">0.1800</td>`, "0.3321",
		"2.0 KiB", "3.0 MiB", "7.0 MiB", "95 µs", "130 µs",
		"2.0%", "100.0%",
		"NOT READY", "lower bound 0.6696 &lt; 0.80", "p99 ratio 4.03 &gt; 1.50",
		"2026-03-01 12:00 – 13:00 UTC",
		"0.01235, 0.61, 0.3777", // outputs rounded to four digits
	} {
		if !strings.Contains(r.body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	// Rows are the primary's class, columns the shadow's.
	for _, c := range []struct{ p, s, n string }{{"0", "0", "16"}, {"0", "1", "1"}, {"1", "2", "3"}, {"2", "1", "4"}, {"2", "2", "12"}} {
		re := regexp.MustCompile(`<td class="heat-\d( diag)?" data-p="` + c.p + `" data-s="` + c.s + `">` + c.n + `</td>`)
		if !re.MatchString(r.body) {
			t.Errorf("confusion cell (%s, %s) is not %s", c.p, c.s, c.n)
		}
	}
	if !regexp.MustCompile(`class="heat-5 diag" data-p="0" data-s="0"`).MatchString(r.body) {
		t.Error("the diagonal is not highlighted")
	}
	for _, id := range []string{"chart-agreement-0", "chart-latency-0", "chart-diff-0"} {
		re := regexp.MustCompile(`<svg id="` + id + `" class="chart-svg [a-z-]+" role="img" aria-label="[^"]+"`)
		if !re.MatchString(r.body) {
			t.Errorf("no chart %s", id)
		}
	}
	if n := strings.Count(r.body, "<polyline"); n != 3 {
		t.Errorf("%d polylines, want 3 (agreement, primary and shadow latency)", n)
	}
	if n := strings.Count(r.body, `<rect class="bar"`); n != 3 {
		t.Errorf("%d histogram bars, want 3", n)
	}
	if !strings.Contains(r.body, "minimum 0.80") {
		t.Error("the agreement chart lacks the threshold rule")
	}
	if got := r.header.Get("Content-Security-Policy"); !strings.Contains(got, "script-src 'self'") {
		t.Errorf("CSP = %q", got)
	}
}

// Ensure strings from payloads, ids and events are escaped everywhere, in
// text and in attributes, and request links survive odd ids.
func TestReportPageEscapes(t *testing.T) {
	rs := newReportServer(t, nil)
	for _, path := range []string{"/report", "/report/requests/req-2"} {
		r := get(t, rs.URL+path)
		if r.status != 200 {
			t.Fatalf("%s: status %d", path, r.status)
		}
		if strings.Contains(r.body, "<script>alert") {
			t.Errorf("%s: unescaped payload in the page", path)
		}
		if !strings.Contains(r.body, "&lt;script&gt;alert(") {
			t.Errorf("%s: the escaped payload is missing", path)
		}
		if n := strings.Count(r.body, "<script"); n != 1 {
			t.Errorf("%s: %d script tags, want only /static/report.js", path, n)
		}
	}
	r := get(t, rs.URL+"/report")
	want := `href="/report/requests/req%2F1%3Fx=%3Cscript%3Ealert%28%22x%22%29%3C%2Fscript%3E"`
	if !strings.Contains(r.body, want) {
		t.Errorf("request link not path-escaped; want %s", want)
	}
}

// Ensure the request page shows everything stored about a request, and
// that unknown ids are 404 in both the page and the API.
func TestRequestDetail(t *testing.T) {
	rs := newReportServer(t, nil)
	r := get(t, rs.URL+"/report/requests/req-2")
	for _, want := range []string{"req-2", "[[6.3, 2.8, 5.1, 1.5]]", "iris-v1@aaaaaaaaaaaa", "iris-v2", "@bbbbbbbbbbbb", "180 µs", "240 µs", "vs primary 181 µs", "200 µs CPU", "2 → 1", "0.0000", "0 of 1"} {
		if !strings.Contains(r.body, want) {
			t.Errorf("request page lacks %q", want)
		}
	}
	j := get(t, rs.URL+"/api/requests/req-2")
	var d report.RequestDetail
	if err := json.Unmarshal([]byte(j.body), &d); err != nil || j.status != 200 || d.RequestID != "req-2" {
		t.Errorf("api: %d %v %.200s", j.status, err, j.body)
	}
	for _, path := range []string{"/api/requests/nope", "/report/requests/nope"} {
		r := get(t, rs.URL+path)
		if r.status != 404 || !strings.Contains(r.body, "nope") {
			t.Errorf("%s: %d %.200s, want 404 naming the id", path, r.status, r.body)
		}
	}
	if r := get(t, rs.URL+"/api/requests/"+strings.Repeat("x", 200)); r.status != 400 {
		t.Errorf("long id: status %d, want 400", r.status)
	}
}

// Ensure /api/report returns the report as JSON and passes the query on.
func TestReportJSON(t *testing.T) {
	rs := newReportServer(t, nil)
	r := get(t, rs.URL+"/api/report?window=24h&shadow=iris-v2&version=bbbbbbbbbbbb&tolerance=0.01")
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	var got report.Report
	if err := json.Unmarshal([]byte(r.body), &got); err != nil {
		t.Fatal(err)
	}
	if want := fixtureReport(); !reflect.DeepEqual(got.Shadows[0].Classification, want.Shadows[0].Classification) || got.Requests != 50 {
		t.Errorf("JSON report differs from the fixture: %+v", got.Shadows[0].Classification)
	}
	if want := (report.Query{Window: "24h", Shadow: "iris-v2", Version: "bbbbbbbbbbbb", Tolerance: 0.01}); rs.query != want {
		t.Errorf("query = %+v, want %+v", rs.query, want)
	}
	get(t, rs.URL+"/api/report")
	if rs.query.Window != "1h" || rs.query.Tolerance <= 0 {
		t.Errorf("default query = %+v, want window 1h and a positive tolerance", rs.query)
	}
}

// Ensure bad query parameters are 400 with a message naming the parameter
// and what is allowed, as JSON from the API and as a page from /report.
func TestReportBadParams(t *testing.T) {
	rs := newReportServer(t, nil)
	tests := []struct {
		path string
		want []string
	}{
		{"/api/report?window=2h", []string{`window "2h"`, "15m, 1h, 24h, 7d, all"}},
		{"/api/report?tolerance=-1", []string{`tolerance "-1"`, "≥ 0"}},
		{"/api/report?tolerance=abc", []string{`tolerance "abc"`}},
		{"/api/report?tolerance=NaN", []string{`tolerance "NaN"`}},
		{"/api/report?shadow=" + strings.Repeat("s", 300), []string{"shadow"}},
		{"/api/pairs?limit=0", []string{`limit "0"`, "1 to 100000"}},
		{"/api/pairs?limit=many", []string{`limit "many"`}},
		{"/api/pairs?format=xml", []string{`format "xml"`, "csv or json"}},
		{"/api/pairs?disagree=maybe", []string{`disagree "maybe"`, "true or false"}},
		{"/api/pairs?largest=2", []string{`largest "2"`, "true or false"}},
		{"/api/pairs?tolerance=-0.1", []string{`tolerance "-0.1"`}},
		{"/api/pairs?window=1y", []string{`window "1y"`}},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			r := get(t, rs.URL+tt.path)
			if r.status != 400 || r.header.Get("Content-Type") != "application/json" {
				t.Fatalf("status %d, type %q, want 400 JSON: %s", r.status, r.header.Get("Content-Type"), r.body)
			}
			var e map[string]string
			if err := json.Unmarshal([]byte(r.body), &e); err != nil || e["code"] != understudy.EINVALID {
				t.Fatalf("body %s: %v", r.body, err)
			}
			for _, w := range tt.want {
				if !strings.Contains(e["error"], w) {
					t.Errorf("error %q does not mention %q", e["error"], w)
				}
			}
		})
	}
	r := get(t, rs.URL+"/report?window=2h")
	if r.status != 400 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") || !strings.Contains(r.body, "window &#34;2h&#34;") {
		t.Errorf("page: status %d type %q: %.300s", r.status, r.header.Get("Content-Type"), r.body)
	}
}

// Ensure pairs export as CSV with a header and one row per pair, as an
// attachment, and as JSON; and that the filter reaches the store.
func TestPairsExport(t *testing.T) {
	rs := newReportServer(t, nil)
	r := get(t, rs.URL+"/api/pairs?shadow=iris-v2&version=bbbbbbbbbbbb&disagree=true&largest=true&tolerance=0.5&limit=10&window=1h&format=csv")
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "text/csv; charset=utf-8" {
		t.Errorf("Content-Type = %q", ct)
	}
	cd := r.header.Get("Content-Disposition")
	if !strings.HasPrefix(cd, `attachment; filename="understudy-pairs-iris-v2-bbbbbbbbbbbb-disagreements-largest-`) || !strings.HasSuffix(cd, `.csv"`) {
		t.Errorf("Content-Disposition = %q", cd)
	}
	rows, err := csv.NewReader(strings.NewReader(r.body)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 || rows[0][0] != "request_id" || rows[1][0] != "req/1?x="+xss || rows[2][0] != "req-2" {
		t.Errorf("csv = %q, want a header and the two pairs", rows)
	}
	want := report.PairFilter{Shadow: "iris-v2", Version: "bbbbbbbbbbbb", DisagreeOnly: true, Largest: true, Tolerance: 0.5, Limit: 10, Since: t0}
	if !reflect.DeepEqual(rs.filter, want) {
		t.Errorf("filter = %+v, want %+v", rs.filter, want)
	}

	r = get(t, rs.URL+"/api/pairs")
	var body struct {
		Pairs []report.Pair `json:"pairs"`
		Count int           `json:"count"`
	}
	if err := json.Unmarshal([]byte(r.body), &body); err != nil || body.Count != 2 || len(body.Pairs) != 2 {
		t.Errorf("json: %v %.200s", err, r.body)
	}
	if want := (report.PairFilter{Tolerance: report.DefaultTolerance, Limit: 1000}); !reflect.DeepEqual(rs.filter, want) {
		t.Errorf("default filter = %+v, want %+v", rs.filter, want)
	}

	// A tolerance of 0 is a tolerance, not a request for the default.
	get(t, rs.URL+"/api/pairs?disagree=true&tolerance=0")
	if want := (report.PairFilter{DisagreeOnly: true, Limit: 1000}); !reflect.DeepEqual(rs.filter, want) {
		t.Errorf("filter with tolerance 0 = %+v, want %+v", rs.filter, want)
	}
}

// Ensure the report is public without a report token, and with one wants
// it as a bearer header, a cookie from ?token= or the login form; static
// files stay public.
func TestReportToken(t *testing.T) {
	open := newReportServer(t, nil)
	for _, path := range []string{"/report", "/api/report", "/api/pairs", "/report/requests/req-2"} {
		if r := get(t, open.URL+path); r.status != 200 {
			t.Errorf("no token configured: %s = %d, want 200", path, r.status)
		}
	}

	rs := newReportServer(t, func(s *httpapi.Server) { s.ReportToken = "s3cret" })
	for _, path := range []string{"/api/report", "/api/pairs?format=csv", "/api/requests/req-2"} {
		r := get(t, rs.URL+path)
		if r.status != 401 || !strings.Contains(r.body, "Bearer") || r.header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s without token: %d %.200s, want 401 JSON", path, r.status, r.body)
		}
		if r := get(t, rs.URL+path, "Authorization", "Bearer wrong"); r.status != 401 {
			t.Errorf("%s with a wrong token: %d, want 401", path, r.status)
		}
		if r := get(t, rs.URL+path, "Authorization", "Bearer s3cret"); r.status != 200 {
			t.Errorf("%s with the token: %d, want 200", path, r.status)
		}
	}
	r := get(t, rs.URL+"/report?window=24h")
	if r.status != 401 || !strings.Contains(r.body, `action="/report/login"`) || !strings.Contains(r.body, `value="/report?window=24h"`) {
		t.Errorf("page without token: %d %.300s, want 401 with the login form", r.status, r.body)
	}
	if r := get(t, rs.URL+"/static/report.css"); r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/css") {
		t.Errorf("static: %d %q, want 200 CSS", r.status, r.header.Get("Content-Type"))
	}

	// ?token= sets the cookie and redirects to the page without it.
	r = get(t, rs.URL+"/report?window=24h&token=s3cret")
	if r.status != http.StatusSeeOther || r.header.Get("Location") != "/report?window=24h" {
		t.Fatalf("?token=: %d to %q, want 303 to /report?window=24h", r.status, r.header.Get("Location"))
	}
	cookie := (&http.Response{Header: r.header}).Cookies()
	if len(cookie) != 1 || !cookie[0].HttpOnly || strings.Contains(cookie[0].Value, "s3cret") {
		t.Fatalf("cookie = %+v, want one HttpOnly cookie without the token in it", cookie)
	}
	c := cookie[0].Name + "=" + cookie[0].Value
	for _, path := range []string{"/report", "/report/requests/req-2", "/api/pairs?format=csv"} {
		if r := get(t, rs.URL+path, "Cookie", c); r.status != 200 {
			t.Errorf("%s with the cookie: %d, want 200", path, r.status)
		}
	}
	if r := get(t, rs.URL+"/report", "Cookie", cookie[0].Name+"=00ff"); r.status != 401 {
		t.Errorf("forged cookie: %d, want 401", r.status)
	}
	if r := get(t, rs.URL+"/report?token=nope"); r.status != 401 || !strings.Contains(r.body, "not the report token") {
		t.Errorf("wrong ?token=: %d, want 401 saying so", r.status)
	}

	// The login form.
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, tt := range []struct {
		token, next    string
		status         int
		location       string
		wantCookieSet  bool
		wantInResponse string
	}{
		{"s3cret", "/report/requests/req-2", 303, "/report/requests/req-2", true, ""},
		{"s3cret", "https://evil.example/", 303, "/report", true, ""},
		{"wrong", "/report", 401, "", false, "not the report token"},
	} {
		resp, err := client.PostForm(rs.URL+"/report/login", url.Values{"token": {tt.token}, "next": {tt.next}})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.status || resp.Header.Get("Location") != tt.location || (len(resp.Cookies()) == 1) != tt.wantCookieSet || !strings.Contains(string(b), tt.wantInResponse) {
			t.Errorf("login %q next %q: %d to %q, cookies %v; want %d to %q", tt.token, tt.next, resp.StatusCode, resp.Header.Get("Location"), resp.Cookies(), tt.status, tt.location)
		}
	}
}

// fakeAdmin lets the page offer promotion.
type fakeAdmin struct{}

func (fakeAdmin) Promote(name, version string, _ bool, _ string) (understudy.ModelRef, error) {
	return understudy.ModelRef{Name: name, Version: version}, nil
}
func (fakeAdmin) Rollback(string) (understudy.ModelRef, error) { return understudy.ModelRef{}, nil }
func (fakeAdmin) Configure(string, understudy.SettingsPatch, string) (understudy.ShadowSettings, error) {
	return understudy.ShadowSettings{}, nil
}
func (fakeAdmin) Primary() (understudy.ModelRef, bool) { return understudy.ModelRef{}, false }

// Ensure the promote button works only with admin endpoints on, and
// otherwise says how to turn them on.
func TestReportPromoteButton(t *testing.T) {
	off := get(t, newReportServer(t, nil).URL+"/report")
	if strings.Contains(off.body, `<form class="promote"`) || !strings.Contains(off.body, "--admin-token") || !strings.Contains(off.body, "disabled") {
		t.Error("without an admin token the page must explain how to enable promoting, with no working button")
	}
	on := get(t, newReportServer(t, func(s *httpapi.Server) { s.Admin, s.AdminToken = fakeAdmin{}, "adm" }).URL+"/report")
	for _, want := range []string{`<form class="promote" data-model="iris-v2" data-version="bbbbbbbbbbbb">`, `id="admin-token"`, "sessionStorage"} {
		if !strings.Contains(on.body, want) {
			t.Errorf("with admin on, page lacks %q", want)
		}
	}
}

// Ensure an empty report tells the user how to send traffic, with an
// example of the primary's input shape.
func TestReportEmpty(t *testing.T) {
	rs := newReportServer(t, func(s *httpapi.Server) {
		s.Report = func(context.Context, report.Query) (*report.Report, error) {
			return &report.Report{Query: report.Query{Window: "1h"}, Primary: understudy.ModelRef{Name: "fake", Version: "0"}, Thresholds: report.DefaultThresholds, To: t0}, nil
		}
		s.Models = listModels{{Name: "fake", Role: understudy.RolePrimary, Signature: &understudy.Signature{
			Inputs: []understudy.TensorInfo{{Name: "x", DType: understudy.Float32, Dims: []int64{-1, 3}}}}}}
	})
	r := get(t, rs.URL+"/report")
	for _, want := range []string{"No traffic in this window yet", "/predict", `{&#34;input&#34;: [[0, 0, 0]]}`, "/feedback", "make demo"} {
		if !strings.Contains(r.body, want) {
			t.Errorf("empty page lacks %q", want)
		}
	}
}

type listModels []understudy.ModelInfo

func (listModels) AcquirePrimary() (*understudy.ServingModel, func(), bool) { return nil, nil, false }
func (l listModels) List() []understudy.ModelInfo                           { return l }
func (listModels) Acquire(string, string) (*understudy.ServingModel, func(), error) {
	return nil, nil, understudy.Errorf(understudy.EUNAVAILABLE, "no primary")
}

// Ensure the routes answer 503, not a crash, when the store is not wired.
func TestReportUnconfigured(t *testing.T) {
	ts := httptest.NewServer((&httpapi.Server{Log: zerolog.Nop()}).Handler())
	defer ts.Close()
	for _, path := range []string{"/report", "/api/report", "/api/pairs", "/api/requests/x", "/report/requests/x"} {
		if r := get(t, ts.URL+path); r.status != 503 {
			t.Errorf("%s: %d, want 503", path, r.status)
		}
	}
	if r := get(t, ts.URL+"/"); r.status != http.StatusFound || r.header.Get("Location") != "/report" {
		t.Errorf("/ = %d to %q, want a redirect to /report", r.status, r.header.Get("Location"))
	}
}

// Ensure the page's CSV link asks for the tolerance the page used, so that
// the download holds the disagreements the page counted.
func TestCSVLinkKeepsTheTolerance(t *testing.T) {
	rs := newReportServer(t, func(s *httpapi.Server) {
		// As report.Build does, the report carries the query it answers.
		s.Report = func(_ context.Context, q report.Query) (*report.Report, error) {
			rep := fixtureReport()
			rep.Query = q
			return rep, nil
		}
	})
	r := get(t, rs.URL+"/report?tolerance=0.5")
	if r.status != 200 {
		t.Fatalf("status %d: %.300s", r.status, r.body)
	}
	m := regexp.MustCompile(`href="([^"]*)" download>download CSV`).FindStringSubmatch(r.body)
	if m == nil {
		t.Fatalf("no CSV link on the page: %.300s", r.body)
	}
	if !strings.Contains(m[1], "tolerance=0.5") {
		t.Errorf("CSV link %q does not carry tolerance=0.5", m[1])
	}
}

// Ensure a request id is decoded exactly once from the path, whatever it
// holds: "%41" is not "A", and "a/b" and "100%" reach their own requests.
func TestRequestIDsDecodedOnce(t *testing.T) {
	var got []string
	rs := newReportServer(t, func(s *httpapi.Server) {
		s.Request = func(_ context.Context, id string) (*report.RequestDetail, error) {
			got = append(got, id)
			return fixtureDetail(), nil
		}
	})
	for _, id := range []string{"%41", "a/b", "100%", "plain"} {
		got = nil
		if r := get(t, rs.URL+"/api/requests/"+url.PathEscape(id)); r.status != 200 {
			t.Errorf("%q: status %d %.200s", id, r.status, r.body)
			continue
		}
		if len(got) != 1 || got[0] != id {
			t.Errorf("path for %q reached the store as %q", id, got)
		}
	}
}

// Ensure the ?token= redirect keeps an escaped slash in the path.
func TestTokenRedirectKeepsTheEscapedPath(t *testing.T) {
	rs := newReportServer(t, func(s *httpapi.Server) { s.ReportToken = "s3cret" })
	r := get(t, rs.URL+"/report/requests/a%2Fb?token=s3cret")
	if r.status != http.StatusSeeOther || r.header.Get("Location") != "/report/requests/a%2Fb" {
		t.Errorf("?token=: %d to %q, want 303 to /report/requests/a%%2Fb", r.status, r.header.Get("Location"))
	}
}
