package httpapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/understudy-ml/understudy/pkg/httpapi"
	"github.com/understudy-ml/understudy/pkg/report"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

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
