package registry

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/understudy-ml/understudy/pkg/understudy"
)

// This file is the canary mode: one shadow at a time may answer a weighted
// share of users itself (AcquireCanary), and a guard over its last requests
// stops it, persistently, when too many of them fail. At most one model is
// in canary mode at a time, so that the weight alone says which share of
// keys it answers and no partition of the hash space between canaries is
// needed. A promoted canary leaves canary mode: it answers everything now.

// canaryState is one model version's canary counts and the guard's window.
type canaryState struct {
	seen, routed, answered, fallbacks, stops atomic.Int64
	stopping                                 atomic.Bool

	mu     sync.Mutex
	ring   []bool // true = failed, oldest overwritten first
	next   int
	failed int
}

// record adds one routed request to the window and reports whether the
// guard trips: failures / window > maxRate. With fewer than window requests
// the same budget applies, so a candidate that fails at once is stopped at
// once rather than after a whole window of fallbacks.
func (c *canaryState) record(failed bool, window int, maxRate float64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cap(c.ring) != window {
		// A new window size starts the window afresh.
		c.ring, c.next, c.failed = make([]bool, 0, window), 0, 0
	}
	if len(c.ring) < window {
		c.ring = append(c.ring, failed)
	} else {
		if c.ring[c.next] {
			c.failed--
		}
		c.ring[c.next] = failed
		c.next = (c.next + 1) % window
	}
	if failed {
		c.failed++
	}
	return float64(c.failed)/float64(window) > maxRate
}

func (c *canaryState) reset() {
	c.mu.Lock()
	c.ring, c.next, c.failed = nil, 0, 0
	c.mu.Unlock()
	c.stopping.Store(false)
}

func (c *canaryState) window() (failed, size int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.failed, len(c.ring)
}

func effective(s understudy.CanarySettings) (window int, maxRate float64) {
	window, maxRate = s.Window, s.MaxErrorRate
	if window <= 0 {
		window = understudy.DefaultCanaryWindow
	}
	if maxRate <= 0 {
		maxRate = understudy.DefaultMaxErrorRate
	}
	return window, maxRate
}

// canaryInfo describes m's canary state for GET /models; nil unless m is
// in canary mode.
func (m *Model) canaryInfo(set Settings) *understudy.CanaryInfo {
	if set.Canary.Mode != understudy.ModeCanary {
		return nil
	}
	c := &m.canary
	info := &understudy.CanaryInfo{CanarySettings: set.Canary,
		Routed: c.routed.Load(), Answered: c.answered.Load(), Fallbacks: c.fallbacks.Load(), Stops: c.stops.Load()}
	info.Window, info.MaxErrorRate = effective(set.Canary)
	if seen := c.seen.Load(); seen > 0 {
		info.AnsweredShare = float64(info.Answered) / float64(seen)
	}
	info.WindowErrors, info.WindowSize = c.window()
	return info
}

func checkCanaryPatch(p understudy.CanaryPatch) error {
	if p.Mode != nil && *p.Mode != understudy.ModeShadow && *p.Mode != understudy.ModeCanary {
		return understudy.Errorf(understudy.EINVALID, "mode %q: want \"shadow\" or \"canary\"", *p.Mode)
	}
	if p.Weight != nil && (math.IsNaN(*p.Weight) || *p.Weight < 0 || *p.Weight > 1) {
		return understudy.Errorf(understudy.EINVALID, "weight %v: want a share between 0 and 1", *p.Weight)
	}
	if p.MaxErrorRate != nil && (math.IsNaN(*p.MaxErrorRate) || *p.MaxErrorRate <= 0 || *p.MaxErrorRate > 1) {
		return understudy.Errorf(understudy.EINVALID, "max_error_rate %v: want a share above 0, at most 1", *p.MaxErrorRate)
	}
	if p.Window != nil && (*p.Window < 1 || *p.Window > 100_000) {
		return understudy.Errorf(understudy.EINVALID, "window %d: want 1 to 100000 requests", *p.Window)
	}
	if p.Steps != nil {
		prev := 0.0
		for _, w := range *p.Steps {
			if math.IsNaN(w) || w <= prev || w > 1 {
				return understudy.Errorf(understudy.EINVALID, "steps %v: want weights that rise, each above 0 and at most 1", *p.Steps)
			}
			prev = w
		}
		if len(*p.Steps) > 0 && (p.StepAfterPairs == nil || *p.StepAfterPairs < 1) {
			return understudy.Errorf(understudy.EINVALID, "steps need step_after_pairs: how many new pairs each step waits for, at least 1")
		}
	}
	if p.StopOn != nil {
		for _, c := range *p.StopOn {
			if !slices.Contains(understudy.StopChecks, c) {
				return understudy.Errorf(understudy.EINVALID, "stop_on %q: want verdict checks among %s", c, strings.Join(understudy.StopChecks, ", "))
			}
		}
	}
	return nil
}

// applyCanary applies the canary part of a settings patch to set, the
// settings of name. r.mu must be held.
func (r *Registry) applyCanary(name string, set *Settings, p understudy.CanaryPatch) error {
	if p.Empty() {
		return nil
	}
	c := set.Canary
	if p.Mode != nil {
		c.Mode = *p.Mode
		if c.Mode == understudy.ModeShadow {
			c.Mode = ""
		}
	}
	if p.Weight != nil {
		c.Weight = *p.Weight
	}
	if p.MaxErrorRate != nil {
		c.MaxErrorRate = *p.MaxErrorRate
	}
	if p.Window != nil {
		c.Window = *p.Window
	}
	if p.StopOn != nil {
		c.StopOn = slices.Clone(*p.StopOn)
	}
	if p.StepAfterPairs != nil {
		c.StepAfterPairs = *p.StepAfterPairs
	}
	if p.Steps != nil {
		c.Steps = slices.Clone(*p.Steps)
		// A rollout starts at its first step, and counts its pairs from
		// the next look.
		if len(c.Steps) > 0 {
			if p.Weight == nil {
				c.Weight = c.Steps[0]
			}
			c.StepPairs = -1
		}
	}
	if c.Mode == understudy.ModeCanary {
		if r.primary != nil && r.primary.Name == name {
			return understudy.Errorf(understudy.ECONFLICT, "%q is the primary; a canary is a shadow that answers a share of users", name)
		}
		for other, s := range r.settings {
			if other != name && s.Canary.Mode == understudy.ModeCanary {
				return understudy.Errorf(understudy.ECONFLICT, "%q is already the canary; at most one model is a canary at a time: set its mode to \"shadow\" first", other)
			}
		}
	}
	if p.Weight != nil || p.Mode != nil {
		// An admin's weight lifts a stop, and the guard starts afresh.
		c.Stopped = ""
		for _, m := range r.models {
			if m.Name == name {
				m.canary.reset()
			}
		}
	}
	set.Canary = c
	return nil
}

func canaryDetail(c understudy.CanarySettings) string {
	if c.Mode != understudy.ModeCanary {
		return ""
	}
	w, rate := effective(c)
	detail := fmt.Sprintf(", mode canary, weight %v, max error rate %v over %d requests", c.Weight, rate, w)
	if len(c.StopOn) > 0 {
		detail += ", stops on a failed " + strings.Join(c.StopOn, " or ") + " check"
	}
	return detail
}

// endCanary takes a model that is being promoted out of canary mode.
// r.mu must be held.
func (r *Registry) endCanary(name string) {
	set, ok := r.settings[name]
	if !ok || set.Canary.Mode != understudy.ModeCanary {
		return
	}
	set.Canary = understudy.CanarySettings{}
	r.settings[name] = set
	for _, m := range r.models {
		if m.Name == name {
			m.SetSettings(set)
		}
	}
}

// StepCanary moves a progressive rollout to weight, its pairs counted
// from stepPairs; the rollout calls it off the request path.
func (r *Registry) StepCanary(name string, weight float64, stepPairs int64, actor string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	set, ok := r.settings[name]
	if !ok || set.Canary.Mode != understudy.ModeCanary || set.Canary.Stopped != "" {
		return understudy.Errorf(understudy.ECONFLICT, "%q is not a running canary", name)
	}
	moved := set.Canary.Weight != weight
	set.Canary.Weight, set.Canary.StepPairs = weight, stepPairs
	r.settings[name] = set
	for _, m := range r.models {
		if m.Name == name {
			m.SetSettings(set)
		}
	}
	if moved {
		detail := fmt.Sprintf("rollout step: weight %v", weight)
		r.Log.Warn().Str("model", name).Str("actor", actor).Msg(detail)
		r.event(understudy.EventSettings, name, "", actor, detail)
	}
	r.deployed()
	return nil
}

// AcquireCanary returns the canary now taking a share of traffic, acquired,
// if there is one: a shadow in canary mode with a weight above 0.
func (r *Registry) AcquireCanary() (understudy.CanaryRoute, bool) {
	s := r.state.Load()
	if s == nil {
		return understudy.CanaryRoute{}, false
	}
	for _, m := range s.shadows {
		set := m.Settings()
		if set.Canary.Mode != understudy.ModeCanary || set.Canary.Weight <= 0 || !m.Acquire() {
			continue
		}
		m.canary.seen.Add(1)
		// The closure captures its own copy: capturing the loop variable
		// moved it to the heap on every call, with or without a canary.
		c := m
		return understudy.CanaryRoute{Model: &c.ServingModel, Weight: set.Canary.Weight, Timeout: set.Timeout,
			Release: c.release, Outcome: func(answered bool) { r.canaryOutcome(c, answered) }}, true
	}
	return understudy.CanaryRoute{}, false
}

func (r *Registry) canaryOutcome(m *Model, answered bool) {
	c := &m.canary
	c.routed.Add(1)
	if answered {
		c.answered.Add(1)
	} else {
		c.fallbacks.Add(1)
	}
	window, rate := effective(m.Settings().Canary)
	if !c.record(!answered, window, rate) || !c.stopping.CompareAndSwap(false, true) {
		return
	}
	failed, seen := c.window()
	reason := fmt.Sprintf("%d of its last %d canary requests failed or timed out: over the max error rate %v of a %d-request window", failed, seen, rate, window)
	// Off the request path: stopping takes the registry's lock and
	// persists the deployment.
	go r.StopCanary(m.Name, reason, "guard")
}

// StopCanary sets a canary's weight to 0 and records why, persistently,
// until an admin sets a weight again.
func (r *Registry) StopCanary(name, reason, actor string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	set, ok := r.settings[name]
	if !ok || set.Canary.Mode != understudy.ModeCanary {
		return understudy.Errorf(understudy.ECONFLICT, "%q is not a canary", name)
	}
	if set.Canary.Weight == 0 && set.Canary.Stopped != "" {
		return nil
	}
	set.Canary.Weight, set.Canary.Stopped = 0, reason
	r.settings[name] = set
	version := ""
	for _, m := range r.models {
		if m.Name == name {
			m.SetSettings(set)
			m.canary.stops.Add(1)
			version = m.Version
		}
	}
	r.Log.Error().Str("model", name).Str("actor", actor).Str("reason", reason).Msg("canary stopped: weight set to 0")
	r.event(understudy.EventCanaryStopped, name, version, actor, reason)
	r.deployed()
	return nil
}

// AcquirePrimaryModel returns the primary as a registry model, acquired:
// the mirror runs it off the path as the shadow of a canary request.
func (r *Registry) AcquirePrimaryModel() (*Model, bool) {
	for range 3 {
		s := r.state.Load()
		if s == nil || s.primary == nil {
			return nil, false
		}
		if s.primary.Acquire() {
			return s.primary, true
		}
	}
	return nil, false
}
