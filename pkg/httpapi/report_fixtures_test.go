package httpapi_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/understudy-ml/understudy/pkg/httpapi"
	"github.com/understudy-ml/understudy/pkg/report"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// This file holds what the report's tests share: a report and a stored
// request with every section filled (and a script tag where a payload could
// carry one), a server that serves them and records what it was asked, a GET
// that does not follow redirects, and stand-ins for the admin API and the
// model list.

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
				SampledOut: 0, Dropped: 0, Timeouts: 0, PrimaryErrorRate: 0,
				Live: 50, Offered: 50, Coverage: 1, LiveCoverage: 1, DropReasons: map[string]int64{}},
			Classification: &report.Classification{Output: "label", Pairs: 50, Agree: 40, Agreement: 0.8,
				WilsonLow: 0.66959, WilsonHigh: 0.88758, Kappa: 0.69951,
				Classes: []int64{0, 1, 2}, Confusion: [][]int64{{16, 1, 0}, {2, 12, 3}, {0, 4, 12}}},
			Accuracy: &report.Accuracy{Labelled: 45, Compared: 45, PrimaryCorrect: 42, ShadowCorrect: 40, PrimaryAcc: 42.0 / 45, ShadowAcc: 40.0 / 45,
				B: 4, C: 2, McNemarP: 0.6875},
			Latency: report.Latency{Origin: understudy.OriginLive, N: 50, PrimaryP50: 182, PrimaryP95: 250, PrimaryP99: 310, ShadowP50: 245, ShadowP95: 400, ShadowP99: 1250,
				RatioP50: 245.0 / 182, RatioP99: 1250.0 / 310, Exact: true},
			Drift:     report.Drift{PSI: fp(0.01234), KSD: fp(0.18), KSP: fp(0.33214), KSSamples: 50},
			Resources: report.Resources{PrimaryFileSize: 2048, ShadowFileSize: 3 << 20, PrimaryMemory: 5 << 20, ShadowMemory: 7 << 20, PrimaryCPUUS: 95, ShadowCPUUS: 130},
			Charts: report.Charts{Agreement: agreement, Latency: latency,
				DiffHist: []report.Bin{{Lo: 0, Hi: 0.01, Count: 30}, {Lo: 0.01, Hi: 0.1, Count: 12}, {Lo: 0.1, Hi: 1, Count: 8}}},
			Disagreements: report.Disagreements{
				Latest:  []report.Pair{pair("req/1?x="+xss, 50, 1, 2, 0.31)},
				Largest: []report.Pair{pair("req-2", 40, 2, 1, 0.62)},
			},
			Verdict: report.Verdict{Ready: false, Pairs: 50, LivePairs: 50, LiveShare: 1,
				Evidence: "100.0% of the evidence is live: 50 live, 0 backfilled and 0 backtested pairs; latency and CPU are judged on the 50 live pairs only.", Checks: []report.Check{
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

type listModels []understudy.ModelInfo

func (listModels) AcquirePrimary() (*understudy.ServingModel, func(), bool) { return nil, nil, false }
func (l listModels) List() []understudy.ModelInfo                           { return l }
func (listModels) Acquire(string, string) (*understudy.ServingModel, func(), error) {
	return nil, nil, understudy.Errorf(understudy.EUNAVAILABLE, "no primary")
}
