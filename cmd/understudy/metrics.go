package main

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/understudy-ml/understudy/pkg/metrics"
	"github.com/understudy-ml/understudy/pkg/store"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// This file registers the metrics that read the server's state when
// Prometheus scrapes: queue depths, rows written and lost per table, the
// store thread's counters, and the models loaded by role.

func (m *Main) registerGauges() {
	m.metrics.GaugeFunc("understudy_shadow_queue_depth", "Shadow jobs waiting for a worker.", func() float64 { return float64(m.mirror.QueueDepth()) })
	m.metrics.GaugeFunc("understudy_shadow_backlog_pending", "Shadow jobs deferred into the store's backlog, waiting for the server to be idle to be backfilled.", func() float64 { return float64(m.mirror.Pending()) })
	m.metrics.GaugeFunc("understudy_store_queue_depth", "Rows waiting for the store's writer.", func() float64 { return float64(m.store.Stats().QueueDepth) })
	tables := map[string]func(store.Stats) store.TableStats{
		"predictions":    func(s store.Stats) store.TableStats { return s.Predictions },
		"shadow_results": func(s store.Stats) store.TableStats { return s.ShadowResults },
		"shadow_skips":   func(s store.Stats) store.TableStats { return s.Skips },
	}
	for table, get := range tables {
		labels := prometheus.Labels{"table": table}
		m.metrics.CounterFunc("understudy_store_rows_written_total", "Rows committed to the database.", labels, func() float64 { return float64(get(m.store.Stats()).Written) })
		m.metrics.CounterFunc("understudy_store_rows_lost_total", "Rows that could not be stored (queue full, write failed, store unreachable past its buffer).", labels, func() float64 { return float64(get(m.store.Stats()).Lost) })
	}
	m.metrics.CounterFunc("understudy_store_batches_total", "Batches the store's writer committed or tried to.", nil, func() float64 { return float64(m.store.Stats().Batches) })
	m.metrics.CounterFunc("understudy_store_write_errors_total", "Batches the store's writer failed to commit.", nil, func() float64 { return float64(m.store.Stats().FailedBatches) })
	if m.threadStats == nil {
		// The counters below are the SQLite backend's own.
		m.registerModelSeries()
		return
	}
	m.metrics.CounterFunc("understudy_store_shadow_commits_taken_back_total",
		"Commits of shadow results the writer made at normal priority because the low-priority thread had not started them within 5ms: a sign of saturated cores.",
		nil, func() float64 { return float64(m.threadStats().ShadowCommitsTakenBack) })
	m.metrics.CounterFunc("understudy_store_shadow_commits_raised_total",
		"Commits of shadow results the low-priority thread had started but could not finish for lack of CPU, finished at normal priority so that the writer does not wait on it.",
		nil, func() float64 { return float64(m.threadStats().ShadowCommitsRaised) })
	m.metrics.CounterFunc("understudy_store_checkpoints_total",
		"Write-ahead log checkpoints run by the store on its low-priority thread (SQLite's own are off while that thread exists).",
		nil, func() float64 { return float64(m.threadStats().Checkpoints) })
	m.registerModelSeries()
}

// registerModelSeries makes every loaded model's series exist from its load.
func (m *Main) registerModelSeries() {
	m.metrics.TrackModels(func() []metrics.Model {
		var out []metrics.Model
		for _, info := range m.reg.List() {
			if info.Role == understudy.RolePrimary || info.Role == understudy.RoleShadow {
				out = append(out, metrics.Model{Name: info.Name, Version: info.Version, Role: string(info.Role)})
			}
		}
		return out
	})
	m.metrics.Canaries(func() []metrics.Canary {
		var out []metrics.Canary
		for _, info := range m.reg.List() {
			if c := info.Canary; c != nil {
				out = append(out, metrics.Canary{Name: info.Name, Version: info.Version, Answered: c.Answered, Fallbacks: c.Fallbacks, Stops: c.Stops})
			}
		}
		return out
	})
	m.metrics.ModelsLoaded(func() map[string]int {
		counts := map[string]int{}
		for _, info := range m.reg.List() {
			counts[string(info.Role)]++
		}
		return counts
	})
}
