// Package metrics defines Understudy's Prometheus metrics, labelled by model
// and role, and serves them at /metrics.
//
// It owns the metric names, their help and labels, and the registry they
// live in. It imports the Prometheus client and the standard library only,
// nothing of Understudy's: what it counts comes in through its methods and
// through functions it calls at scrape time (TrackModels, GaugeFunc), which
// cmd connects to the registry, the store and the mirror. The shadow mirror
// reaches it through its own Observer interface, not by importing it.
package metrics

import (
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics holds the collectors, registered on a registry of their own so
// that tests can create several servers in one process.
type Metrics struct {
	Registry *prometheus.Registry

	requests   *prometheus.CounterVec
	errors     *prometheus.CounterVec
	latency    *prometheus.HistogramVec
	drops      *prometheus.CounterVec
	sampledOut *prometheus.CounterVec
	timeouts   *prometheus.CounterVec
	commits    *prometheus.HistogramVec
	deferred   *prometheus.CounterVec
	dropReason *prometheus.CounterVec
	offline    *prometheus.CounterVec

	// models lists the loaded models before each scrape, so that their
	// series exist at 0 from their load and go with their unload.
	models func() []Model
	mu     sync.Mutex
	known  map[Model]bool
	gone   map[Model]int // unloaded versions, and the scrapes left to delete their series

	// okRuns caches the series a successful run records into, per model,
	// version and role (runKey → *okSeries): looking them up by label
	// values hashes and locks twice on every request. A cached pair is
	// good only while gen has not moved; delete moves it, so that a
	// version loaded again after its series were deleted records into the
	// registry's new series, not into orphans.
	okRuns sync.Map
	gen    atomic.Uint64
}

type runKey struct{ model, version, role string }

type okSeries struct {
	gen     uint64
	runs    prometheus.Counter
	latency prometheus.Observer
}

// Model is a loaded model version in the role it plays, as the metrics
// label it.
type Model struct {
	Name, Version, Role string
}

// New creates and registers the collectors.
func New() *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := &Metrics{
		Registry: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "understudy_model_runs_total", Help: "Model runs, by model, version, role and status (ok, error, timeout).",
		}, []string{"model", "version", "role", "status"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "understudy_model_errors_total", Help: "Model runs that failed or timed out, by model, version and role.",
		}, []string{"model", "version", "role"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "understudy_model_run_seconds", Help: "Time of one model run, by model, version and role.",
			Buckets: prometheus.ExponentialBucketsRange(50e-6, 10, 20),
		}, []string{"model", "version", "role"}),
		drops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "understudy_shadow_dropped_total", Help: "Shadow jobs dropped: shed while the primary was busy, the queue was full, or shutdown came first.",
		}, []string{"model", "version", "role"}),
		sampledOut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "understudy_shadow_sampled_out_total", Help: "Requests not mirrored to a shadow because of its sampling rate.",
		}, []string{"model", "version", "role"}),
		timeouts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "understudy_shadow_timeouts_total", Help: "Shadow runs terminated by their timeout.",
		}, []string{"model", "version", "role"}),
	}
	m.commits = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "understudy_store_commit_seconds", Help: "Time of one batch committed by the store's writer, by outcome (ok, error).",
		Buckets: prometheus.ExponentialBucketsRange(100e-6, 10, 16),
	}, []string{"outcome"})
	// Both outcomes exist at 0 from the start.
	m.commits.WithLabelValues("ok")
	m.commits.WithLabelValues("error")
	m.deferred = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "understudy_shadow_deferred_total", Help: "Shadow jobs deferred into the backlog instead of dropped, to be backfilled when the server is idle.",
	}, []string{"model", "version"})
	m.dropReason = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "understudy_shadow_backlog_dropped_total", Help: "Deferred or backtest jobs finally dropped, by reason (backlog_full, inputs_not_stored, expired, shadow_unloaded, not_backtestable).",
	}, []string{"model", "version", "reason"})
	m.offline = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "understudy_shadow_offline_runs_total", Help: "Shadow runs on stored requests, by origin (backfill, backtest) and status.",
	}, []string{"model", "version", "origin", "status"})
	reg.MustRegister(m.requests, m.errors, m.latency, m.drops, m.sampledOut, m.timeouts, m.commits, m.deferred, m.dropReason, m.offline)
	return m
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	h := promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.Sync()
		h.ServeHTTP(w, r)
	})
}

// TrackModels makes the series of every model that f lists exist from its
// load, at 0: a dashboard's rate() over a series that does not exist yet
// shows "no data" instead of 0 (Prometheus's "avoid missing metrics").
// Series of models f no longer lists are deleted.
func (m *Metrics) TrackModels(f func() []Model) {
	m.mu.Lock()
	m.models = f
	m.mu.Unlock()
	m.Sync()
}

// Sync creates the series of the models now loaded and deletes those of
// models that are gone. Handler calls it before each scrape.
func (m *Metrics) Sync() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.models == nil {
		return
	}
	now := map[Model]bool{}
	for _, md := range m.models() {
		now[md] = true
		if m.known[md] {
			continue
		}
		statuses := []string{"ok", "error"}
		if md.Role == "shadow" {
			statuses = append(statuses, "timeout")
			m.drops.WithLabelValues(md.Name, md.Version, md.Role)
			m.sampledOut.WithLabelValues(md.Name, md.Version, md.Role)
			m.timeouts.WithLabelValues(md.Name, md.Version, md.Role)
		}
		for _, st := range statuses {
			m.requests.WithLabelValues(md.Name, md.Version, md.Role, st)
		}
		m.errors.WithLabelValues(md.Name, md.Version, md.Role)
		m.latency.WithLabelValues(md.Name, md.Version, md.Role)
	}
	for md := range m.known {
		if now[md] {
			continue
		}
		// A version that is loaded in another role keeps its series of
		// this one: the counts of the role it had are still true.
		loaded := false
		for other := range now {
			loaded = loaded || other.Name == md.Name && other.Version == md.Version
		}
		if loaded {
			now[md] = true
			continue
		}
		m.delete(md)
		if m.gone == nil {
			m.gone = map[Model]int{}
		}
		m.gone[md] = goneSyncs
	}
	// A run that ends after its model was unloaded records into the
	// series again; they are deleted again for a while, until no such
	// run can be left.
	for md, n := range m.gone {
		loaded := false
		for other := range now {
			loaded = loaded || other.Name == md.Name && other.Version == md.Version
		}
		if loaded || n <= 0 {
			delete(m.gone, md)
			continue
		}
		m.delete(md)
		m.gone[md] = n - 1
	}
	m.known = now
}

// goneSyncs is how many scrapes the series of an unloaded model are
// deleted again after its unload.
const goneSyncs = 10

// delete removes every series of a model version.
func (m *Metrics) delete(md Model) {
	m.gen.Add(1)
	m.okRuns.Clear()
	labels := prometheus.Labels{"model": md.Name, "version": md.Version}
	for _, v := range []*prometheus.MetricVec{m.requests.MetricVec, m.errors.MetricVec, m.latency.MetricVec, m.drops.MetricVec, m.sampledOut.MetricVec, m.timeouts.MetricVec,
		m.deferred.MetricVec, m.dropReason.MetricVec, m.offline.MetricVec} {
		v.DeletePartialMatch(labels)
	}
}

// Run records one model run.
func (m *Metrics) Run(model, version, role, status string, d time.Duration) {
	if status == "ok" {
		s := m.okSeries(model, version, role)
		s.runs.Inc()
		s.latency.Observe(d.Seconds())
		return
	}
	m.requests.WithLabelValues(model, version, role, status).Inc()
	m.errors.WithLabelValues(model, version, role).Inc()
	if status == "timeout" {
		m.timeouts.WithLabelValues(model, version, role).Inc()
	}
	m.latency.WithLabelValues(model, version, role).Observe(d.Seconds())
}

func (m *Metrics) okSeries(model, version, role string) *okSeries {
	k := runKey{model, version, role}
	// Read before the series are looked up: a delete in between makes
	// the entry stale at once rather than cache orphans.
	gen := m.gen.Load()
	if v, ok := m.okRuns.Load(k); ok {
		if s := v.(*okSeries); s.gen == gen {
			return s
		}
	}
	s := &okSeries{gen: gen, runs: m.requests.WithLabelValues(model, version, role, "ok"), latency: m.latency.WithLabelValues(model, version, role)}
	m.okRuns.Store(k, s)
	return s
}

// ShadowRun implements shadow.Observer.
func (m *Metrics) ShadowRun(shadow, version, status string, d time.Duration) {
	m.Run(shadow, version, "shadow", status, d)
}

// Skipped implements shadow.Observer.
func (m *Metrics) Skipped(shadow, version string, sampledOut, dropped int64) {
	if sampledOut > 0 {
		m.sampledOut.WithLabelValues(shadow, version, "shadow").Add(float64(sampledOut))
	}
	if dropped > 0 {
		m.drops.WithLabelValues(shadow, version, "shadow").Add(float64(dropped))
	}
}

// Deferred implements shadow.Observer.
func (m *Metrics) Deferred(shadow, version string, n int64) {
	m.deferred.WithLabelValues(shadow, version).Add(float64(n))
}

// Dropped implements shadow.Observer.
func (m *Metrics) Dropped(shadow, version, reason string, n int64) {
	m.dropReason.WithLabelValues(shadow, version, reason).Add(float64(n))
}

// OfflineRun implements shadow.Observer.
func (m *Metrics) OfflineRun(shadow, version, origin, status string) {
	m.offline.WithLabelValues(shadow, version, origin, status).Inc()
}

// StoreCommit records one batch the store's writer committed; it has the
// shape of store.CommitObserver.
func (m *Metrics) StoreCommit(rows int, took time.Duration, err error) {
	outcome := "ok"
	if err != nil {
		outcome = "error"
	}
	m.commits.WithLabelValues(outcome).Observe(took.Seconds())
}

// GaugeFunc registers a gauge read from f at scrape time.
func (m *Metrics) GaugeFunc(name, help string, f func() float64) {
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
}

// CounterFunc registers a counter read from f at scrape time, with fixed
// label values.
func (m *Metrics) CounterFunc(name, help string, labels prometheus.Labels, f func() float64) {
	m.Registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels}, f))
}

// ModelsLoaded registers a gauge of loaded models by role, read from f.
func (m *Metrics) ModelsLoaded(f func() map[string]int) {
	m.Registry.MustRegister(&modelsCollector{f: f, desc: prometheus.NewDesc("understudy_models_loaded", "Model files by role (primary, shadow, incompatible, failed).", []string{"role"}, nil)})
}

type modelsCollector struct {
	f    func() map[string]int
	desc *prometheus.Desc
}

func (c *modelsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *modelsCollector) Collect(ch chan<- prometheus.Metric) {
	counts := c.f()
	for _, role := range []string{"primary", "shadow", "incompatible", "failed"} {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(counts[role]), role)
	}
}
