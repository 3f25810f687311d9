package main

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/understudy-ml/understudy/pkg/report"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// This file is the second half of the canary's guard: besides its error
// rate (judged per request in the registry), a canary can be stopped when
// a check of its report's verdict fails (stop_on). The report reads the
// store, so this runs on a timer, never on the request path.

// canaryCheckEvery is how often the verdict of a canary with stop_on or
// steps is read; Main.CanaryCheckEvery overrides it.
const canaryCheckEvery = 10 * time.Second

// guardCanary stops a canary whose verdict fails one of its stop_on checks,
// until ctx is done.
func (m *Main) guardCanary(ctx context.Context) {
	every := m.CanaryCheckEvery
	if every <= 0 {
		every = canaryCheckEvery
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, info := range m.reg.List() {
			c := info.Canary
			if c == nil || c.Mode != understudy.ModeCanary || c.Weight <= 0 || info.Role != understudy.RoleShadow ||
				len(c.StopOn)+len(c.Steps) == 0 {
				continue
			}
			// One verdict of the last hour serves both the stop and the
			// rollout.
			recent, ok := m.canaryReport(ctx, info, "1h")
			if !ok {
				continue
			}
			if reason := failedCheck(recent, c.StopOn); reason != "" {
				if err := m.reg.StopCanary(info.Name, reason, "verdict"); err != nil {
					m.Log.Error().Err(err).Str("model", info.Name).Msg("could not stop the canary on its verdict")
				}
				continue
			}
			if len(c.Steps) > 0 {
				m.rollout(ctx, info, c.CanarySettings, recent)
			}
		}
	}
}

// rollout moves a progressive rollout on: once the current step has seen
// StepAfterPairs new pairs with the verdict ready, to the next weight, and
// after the last step to the primary, through the same atomic promote an
// admin uses. A verdict that is not ready holds the step.
func (m *Main) rollout(ctx context.Context, info understudy.ModelInfo, c understudy.CanarySettings, recent *report.Report) {
	rep, ok := m.canaryReport(ctx, info, "all")
	if !ok {
		return
	}
	pairs := rep.Shadows[0].Traffic.OK
	if c.StepPairs < 0 {
		_ = m.reg.StepCanary(info.Name, c.Weight, pairs, "rollout")
		return
	}
	if pairs-c.StepPairs < c.StepAfterPairs {
		return
	}
	if !recent.Shadows[0].Verdict.Ready {
		return
	}
	i := slices.Index(c.Steps, c.Weight)
	if i >= 0 && i+1 < len(c.Steps) {
		if err := m.reg.StepCanary(info.Name, c.Steps[i+1], pairs, "rollout"); err != nil {
			m.Log.Error().Err(err).Str("model", info.Name).Msg("could not move the rollout to its next step")
		}
		return
	}
	if _, err := m.reg.Promote(info.Name, info.Version, false, "rollout"); err != nil {
		m.Log.Error().Err(err).Str("model", info.Name).Msg("the rollout's last step held, but the promote failed")
	}
}

// canaryReport builds the report of a canary version over a window.
func (m *Main) canaryReport(ctx context.Context, info understudy.ModelInfo, window string) (*report.Report, bool) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	q := report.Query{Window: window, Shadow: info.Name, Version: info.Version, Tolerance: report.DefaultTolerance}
	q.Primary, _ = m.reg.Primary()
	rep, err := report.Build(ctx, m.store, q, report.DefaultThresholds, time.Now())
	if err != nil || len(rep.Shadows) == 0 {
		return nil, false
	}
	return rep, true
}

// failedCheck returns why a canary's verdict fails one of the named
// checks, or "" when none does or the verdict has too few pairs to judge.
func failedCheck(rep *report.Report, stopOn []string) string {
	v := rep.Shadows[0].Verdict
	for _, ch := range v.Checks {
		// Too few pairs: the other checks say nothing yet.
		if ch.Name == "pairs" && !ch.Pass {
			return ""
		}
	}
	for _, ch := range v.Checks {
		if !ch.Pass && slices.Contains(stopOn, ch.Name) {
			return fmt.Sprintf("its verdict's %s check failed: %s", ch.Name, ch.Detail)
		}
	}
	return ""
}
