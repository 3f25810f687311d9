package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/understudy-ml/understudy/pkg/report"
)

// scrape reads /metrics into sample values keyed by name{sorted labels}.
func scrape(tb testing.TB, url string) map[string]float64 {
	tb.Helper()
	r := testRequest(tb, "GET", url+"/metrics", nil)
	if r.Status != 200 {
		tb.Fatalf("/metrics: %d", r.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(string(r.Body)))
	if err != nil {
		tb.Fatal(err)
	}
	out := map[string]float64{}
	for name, f := range families {
		if !strings.HasPrefix(name, "understudy_") {
			continue
		}
		for _, m := range f.Metric {
			labels := model.LabelSet{}
			for _, l := range m.Label {
				labels[model.LabelName(l.GetName())] = model.LabelValue(l.GetValue())
			}
			v := 0.0
			switch {
			case m.Counter != nil:
				v = m.Counter.GetValue()
			case m.Gauge != nil:
				v = m.Gauge.GetValue()
			case m.Histogram != nil:
				v = float64(m.Histogram.GetSampleCount())
			}
			out[name+labels.String()] = v
		}
	}
	return out
}

// series names one series the way scrape keys it.
func series(name string, labels ...string) string {
	set := model.LabelSet{}
	for i := 0; i+1 < len(labels); i += 2 {
		set[model.LabelName(labels[i])] = model.LabelValue(labels[i+1])
	}
	return name + set.String()
}

// Ensure every series a loaded model can have exists at 0 from the start,
// so that rate() shows 0 rather than no data, and that after traffic the
// counters agree with the report's counts of the same traffic.
func TestMetricsSeriesExistFromLoad(t *testing.T) {
	m := startServer(t, demoDir(t), "--primary", "iris-v1", "--shed-when-busy=false")
	p, s := "iris-v1", "iris-v2"
	pv := sha12(readFile(t, "../../models/iris-v1.onnx"))
	sv := sha12(readFile(t, "../../models/iris-v2.onnx"))
	got := scrape(t, m.URL())
	for _, want := range []string{
		series("understudy_model_runs_total", "model", p, "version", pv, "role", "primary", "status", "ok"),
		series("understudy_model_runs_total", "model", p, "version", pv, "role", "primary", "status", "error"),
		series("understudy_model_errors_total", "model", p, "version", pv, "role", "primary"),
		series("understudy_model_run_seconds", "model", p, "version", pv, "role", "primary"),
		series("understudy_model_runs_total", "model", s, "version", sv, "role", "shadow", "status", "ok"),
		series("understudy_model_runs_total", "model", s, "version", sv, "role", "shadow", "status", "error"),
		series("understudy_model_runs_total", "model", s, "version", sv, "role", "shadow", "status", "timeout"),
		series("understudy_model_errors_total", "model", s, "version", sv, "role", "shadow"),
		series("understudy_shadow_dropped_total", "model", s, "version", sv, "role", "shadow"),
		series("understudy_shadow_sampled_out_total", "model", s, "version", sv, "role", "shadow"),
		series("understudy_shadow_timeouts_total", "model", s, "version", sv, "role", "shadow"),
		series("understudy_store_commit_seconds", "outcome", "error"),
		series("understudy_store_write_errors_total"),
		series("understudy_store_rows_lost_total", "table", "predictions"),
	} {
		v, ok := got[want]
		if !ok {
			t.Errorf("no series %s right after start", want)
		} else if v != 0 {
			t.Errorf("%s = %v before any traffic, want 0", want, v)
		}
	}

	const n = 40
	rows := holdout(t).Holdout.X32()
	for i := range n {
		r := testRequest(t, "POST", m.URL()+"/predict", rowBody(fmt.Sprintf("m-%d", i), rows[i%len(rows)]))
		if r.Status != 200 {
			t.Fatalf("predict: %d %s", r.Status, r.Body)
		}
	}
	var rep report.Report
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		r := testRequest(t, "GET", m.URL()+"/api/report?window=all", nil)
		if err := json.Unmarshal(r.Body, &rep); err != nil {
			t.Fatalf("report: %v: %s", err, r.Body)
		}
		if rep.Requests == n && len(rep.Shadows) == 1 && rep.Shadows[0].Traffic.Mirrored+rep.Shadows[0].Traffic.Dropped+rep.Shadows[0].Traffic.SampledOut == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("report did not reach %d requests and mirrored jobs: %+v", n, rep)
		}
	}
	got = scrape(t, m.URL())
	tr := rep.Shadows[0].Traffic
	for _, c := range []struct {
		series string
		want   int64
	}{
		{series("understudy_model_runs_total", "model", p, "version", pv, "role", "primary", "status", "ok"), rep.Requests - rep.PrimaryErrors},
		{series("understudy_model_runs_total", "model", p, "version", pv, "role", "primary", "status", "error"), rep.PrimaryErrors},
		{series("understudy_model_run_seconds", "model", p, "version", pv, "role", "primary"), rep.Requests},
		{series("understudy_model_runs_total", "model", s, "version", sv, "role", "shadow", "status", "ok"), tr.OK},
		{series("understudy_model_runs_total", "model", s, "version", sv, "role", "shadow", "status", "error"), tr.Errors},
		{series("understudy_model_runs_total", "model", s, "version", sv, "role", "shadow", "status", "timeout"), tr.Timeouts},
		{series("understudy_shadow_dropped_total", "model", s, "version", sv, "role", "shadow"), tr.Dropped},
		{series("understudy_shadow_sampled_out_total", "model", s, "version", sv, "role", "shadow"), tr.SampledOut},
	} {
		if g := int64(got[c.series]); g != c.want {
			t.Errorf("%s = %d, want %d as the report counts", c.series, g, c.want)
		}
	}
	if got[series("understudy_store_commit_seconds", "outcome", "ok")] < 1 || got[series("understudy_store_batches_total")] < got[series("understudy_store_commit_seconds", "outcome", "ok")] {
		t.Errorf("store commits: histogram %v, batches %v; want at least one commit, each counted",
			got[series("understudy_store_commit_seconds", "outcome", "ok")], got[series("understudy_store_batches_total")])
	}
	if w := got[series("understudy_store_rows_written_total", "table", "predictions")]; int64(w) != rep.Requests {
		t.Errorf("store rows written %v, want %d as the report counts", w, rep.Requests)
	}
	if tr.OK != n {
		t.Errorf("report: %d ok pairs, want %d (shedding is off)", tr.OK, n)
	}
}

func readFile(tb testing.TB, path string) []byte {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// Ensure the series of a model are deleted once its file is removed and it
// is unloaded, so that dashboards do not show models that are gone.
func TestMetricsSeriesGoWithTheModel(t *testing.T) {
	dir := demoDir(t)
	m := startServer(t, dir, "--primary", "iris-v1", "--settle", "50ms", "--rescan", "100ms")
	sv := sha12(readFile(t, filepath.Join(dir, "iris-v2.onnx")))
	key := series("understudy_shadow_dropped_total", "model", "iris-v2", "version", sv, "role", "shadow")
	if _, ok := scrape(t, m.URL())[key]; !ok {
		t.Fatalf("no %s while the shadow is loaded", key)
	}
	if err := os.Remove(filepath.Join(dir, "iris-v2.onnx")); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		got := scrape(t, m.URL())
		gone := true
		for k := range got {
			if strings.Contains(k, `model="iris-v2"`) {
				gone = false
			}
		}
		if gone {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("series of the removed shadow are still exported")
		}
	}
}
