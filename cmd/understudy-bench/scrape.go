package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/prometheus/common/expfmt"
	pmodel "github.com/prometheus/common/model"
)

// This file reads a server's state as a client can: its /metrics in the
// Prometheus text format, its models and its lifecycle events.

// get fetches url and returns the body of a 200 answer.
func get(url string) ([]byte, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: status %d: %.200s", url, resp.StatusCode, bytes.TrimSpace(b))
	}
	return b, nil
}

// getJSON decodes the JSON answer of url into v.
func getJSON(url string, v any) error {
	b, err := get(url)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

type sample struct {
	name   string
	labels map[string]string
	v      float64
}

type samples []sample

// scrape reads every counter, gauge and untyped sample of the server's
// /metrics.
func scrape(url string) (samples, error) {
	b, err := get(url + "/metrics")
	if err != nil {
		return nil, err
	}
	parser := expfmt.NewTextParser(pmodel.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("%s/metrics: %w", url, err)
	}
	var out samples
	for name, f := range families {
		for _, m := range f.Metric {
			s := sample{name: name, labels: map[string]string{}}
			switch {
			case m.Counter != nil:
				s.v = m.Counter.GetValue()
			case m.Gauge != nil:
				s.v = m.Gauge.GetValue()
			case m.Untyped != nil:
				s.v = m.Untyped.GetValue()
			default:
				continue // histograms and summaries: not summed here
			}
			for _, l := range m.Label {
				s.labels[l.GetName()] = l.GetValue()
			}
			out = append(out, s)
		}
	}
	return out, nil
}

// sum adds up the samples named name whose labels hold every key, value
// pair of kv.
func (ss samples) sum(name string, kv ...string) float64 {
	total := 0.0
next:
	for _, s := range ss {
		if s.name != name {
			continue
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if s.labels[kv[i]] != kv[i+1] {
				continue next
			}
		}
		total += s.v
	}
	return total
}

// droppedForGood is the shadow jobs dropped without a run: shed with no
// backlog to defer them to, or dropped from the backlog.
func (ss samples) droppedForGood() float64 {
	return ss.sum("understudy_shadow_dropped_total") + ss.sum("understudy_shadow_backlog_dropped_total")
}

// metricSum is scrape and sum in one, 0 if the server does not answer.
func metricSum(url, name string, kv ...string) float64 {
	ss, err := scrape(url)
	if err != nil {
		return 0
	}
	return ss.sum(name, kv...)
}

// modelRole returns the role and load and warm-up times of the model
// name, "" if the server does not list it.
func modelRole(url, name string) (role string, loadMS, warmMS float64) {
	var v struct {
		Models []struct {
			Name     string  `json:"name"`
			Role     string  `json:"role"`
			LoadMS   float64 `json:"load_ms"`
			WarmupMS float64 `json:"warmup_ms"`
		}
	}
	if getJSON(url+"/models", &v) != nil {
		return "", 0, 0
	}
	for _, m := range v.Models {
		if m.Name == name {
			return m.Role, m.LoadMS, m.WarmupMS
		}
	}
	return "", 0, 0
}

// findEvent returns the detail of the newest lifecycle event of kind for
// the model name, and whether there is one.
func findEvent(url, name, kind string) (string, bool) {
	var v struct {
		Events []struct {
			Kind   string `json:"kind"`
			Model  string `json:"model"`
			Detail string `json:"detail"`
		} `json:"events"`
	}
	if getJSON(url+"/events?model="+name, &v) != nil {
		return "", false
	}
	for _, e := range v.Events {
		if e.Kind == kind && strings.EqualFold(e.Model, name) {
			return e.Detail, true
		}
	}
	return "", false
}
