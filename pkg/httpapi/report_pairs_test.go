package httpapi_test

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/understudy-ml/understudy/pkg/httpapi"
	"github.com/understudy-ml/understudy/pkg/report"
)

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
