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

// canaryCheckEvery is how often the verdict of a canary with stop_on is
// read; Main.CanaryCheckEvery overrides it.
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
			if c == nil || c.Mode != understudy.ModeCanary || c.Weight <= 0 || len(c.StopOn) == 0 || info.Role != understudy.RoleShadow {
				continue
			}
			if reason := m.failedCheck(ctx, info, c.StopOn); reason != "" {
				if err := m.reg.StopCanary(info.Name, reason, "verdict"); err != nil {
					m.Log.Error().Err(err).Str("model", info.Name).Msg("could not stop the canary on its verdict")
				}
			}
		}
	}
}

// failedCheck returns why the canary's verdict over the last hour fails
// one of the named checks, or "" when none does or the verdict has too few
// pairs to judge.
func (m *Main) failedCheck(ctx context.Context, info understudy.ModelInfo, stopOn []string) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	q := report.Query{Window: "1h", Shadow: info.Name, Version: info.Version, Tolerance: report.DefaultTolerance}
	q.Primary, _ = m.reg.Primary()
	rep, err := report.Build(ctx, m.store, q, report.DefaultThresholds, time.Now())
	if err != nil || len(rep.Shadows) == 0 {
		return ""
	}
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
