package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
)

// This file reads a server's state as a client can: its /metrics in the
// Prometheus text format and its lifecycle events.

type sample struct {
	name   string
	labels map[string]string
	v      float64
}

type samples []sample

var (
	sampleLine = regexp.MustCompile(`(?m)^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$`)
	labelPair  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)
)

// scrape reads every sample of the server's /metrics.
func scrape(url string) (samples, error) {
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s/metrics: status %d", url, resp.StatusCode)
	}
	var out samples
	for _, m := range sampleLine.FindAllStringSubmatch(string(b), -1) {
		v, err := strconv.ParseFloat(m[3], 64)
		if err != nil {
			continue
		}
		s := sample{name: m[1], labels: map[string]string{}, v: v}
		for _, l := range labelPair.FindAllStringSubmatch(m[2], -1) {
			s.labels[l[1]] = l[2]
		}
		out = append(out, s)
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

// metricSum is scrape and sum in one, 0 if the server does not answer.
func metricSum(url, name string, kv ...string) float64 {
	ss, err := scrape(url)
	if err != nil {
		return 0
	}
	return ss.sum(name, kv...)
}

// findEvent returns the detail of the newest lifecycle event of kind for
// model, and whether there is one.
func findEvent(url, model, kind string) (string, bool) {
	resp, err := http.Get(url + "/events?model=" + model)
	if err != nil {
		return "", false
	}
	defer resp.Body.Close()
	var v struct {
		Events []struct {
			Kind   string `json:"kind"`
			Model  string `json:"model"`
			Detail string `json:"detail"`
		} `json:"events"`
	}
	if json.NewDecoder(resp.Body).Decode(&v) != nil {
		return "", false
	}
	for _, e := range v.Events {
		if e.Kind == kind && strings.EqualFold(e.Model, model) {
			return e.Detail, true
		}
	}
	return "", false
}
