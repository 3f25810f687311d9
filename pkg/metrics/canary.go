package metrics

import "github.com/prometheus/client_golang/prometheus"

// Canary is one canary's counts since its version loaded, read at scrape
// time.
type Canary struct {
	Name, Version              string
	Answered, Fallbacks, Stops int64
}

// Canaries registers the canary counters, read from f at scrape time: a
// model's series exist at 0 from the moment it is put in canary mode, so
// that a rate() over them reads 0, not "no data".
func (m *Metrics) Canaries(f func() []Canary) {
	labels := []string{"model", "version"}
	m.Registry.MustRegister(&canaryCollector{f: f,
		answered:  prometheus.NewDesc("understudy_canary_answered_total", "Requests a canary answered itself.", labels, nil),
		fallbacks: prometheus.NewDesc("understudy_canary_fallbacks_total", "Requests routed to a canary that it failed or timed out on, answered by the primary instead.", labels, nil),
		stops:     prometheus.NewDesc("understudy_canary_stops_total", "Times the guard set a canary's weight to 0.", labels, nil),
	})
}

type canaryCollector struct {
	f                          func() []Canary
	answered, fallbacks, stops *prometheus.Desc
}

func (c *canaryCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.answered
	ch <- c.fallbacks
	ch <- c.stops
}

func (c *canaryCollector) Collect(ch chan<- prometheus.Metric) {
	for _, k := range c.f() {
		ch <- prometheus.MustNewConstMetric(c.answered, prometheus.CounterValue, float64(k.Answered), k.Name, k.Version)
		ch <- prometheus.MustNewConstMetric(c.fallbacks, prometheus.CounterValue, float64(k.Fallbacks), k.Name, k.Version)
		ch <- prometheus.MustNewConstMetric(c.stops, prometheus.CounterValue, float64(k.Stops), k.Name, k.Version)
	}
}
