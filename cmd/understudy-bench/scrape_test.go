package main

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Ensure scrape reads the text the Prometheus client serves, and that sums
// select by name and labels, with histograms left out.
func TestScrapeSums(t *testing.T) {
	reg := prometheus.NewRegistry()
	runs := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "runs_total"}, []string{"model", "role"})
	depth := prometheus.NewGauge(prometheus.GaugeOpts{Name: "queue_depth"})
	lat := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "latency_seconds"})
	reg.MustRegister(runs, depth, lat)
	runs.WithLabelValues("a", "shadow").Add(3)
	runs.WithLabelValues("b", "shadow").Add(4)
	runs.WithLabelValues("a", "primary").Add(10)
	depth.Set(2)
	lat.Observe(0.5)
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	ss, err := scrape(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		kv   []string
		want float64
	}{
		{"runs_total", nil, 17},
		{"runs_total", []string{"role", "shadow"}, 7},
		{"runs_total", []string{"model", "a", "role", "shadow"}, 3},
		{"runs_total", []string{"model", "c"}, 0},
		{"queue_depth", nil, 2},
		{"latency_seconds", nil, 0},
	} {
		if got := ss.sum(tt.name, tt.kv...); got != tt.want {
			t.Errorf("sum(%s, %v) = %v, want %v", tt.name, tt.kv, got, tt.want)
		}
	}
	if _, err := scrape(srv.URL + "/elsewhere"); err == nil {
		t.Error("scrape of a 404: no error")
	}
}
