package shadow

import (
	"context"
	"errors"

	"time"

	"github.com/understudy-ml/understudy/pkg/understudy"
)

// This file keeps pairs coming for requests routed to a canary, oriented
// primary-vs-candidate as every other pair. When the candidate answered,
// the primary runs here, off the path, as that request's shadow; the pair
// stores the candidate as the shadow with its on-path latency, and the
// primary's off-path answer and latency in the primary's place. Other
// shadows are then compared with that primary answer, not the candidate's,
// so that every shadow's figures stay against the primary. When the
// candidate failed and the primary answered (a fallback), the candidate's
// failed run is stored as its pair and the others are mirrored as usual.

// submitCanary hands over a request that was routed to the canary.
func (m *Mirror) submitCanary(p *understudy.Prediction) {
	if p.ServedBy == understudy.ServedFallback {
		if f := p.CanaryFailure; f != nil {
			if m.store != nil {
				m.store.WriteShadowResult(f)
			}
			m.obs.ShadowRun(f.Shadow, f.Version, f.Status, f.Latency)
		}
		m.submit(p, p.Signature.Outputs, p.Canary)
		return
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed || m.cfg.Primary == nil {
		return
	}
	pm, ok := m.cfg.Primary()
	if !ok {
		return
	}
	select {
	case m.queue <- job{pred: p, model: pm, primaryRun: true}:
	default:
		m.dropCandidate(p)
		pm.Release()
	}
}

// dropCandidate counts a candidate's pair as dropped: the primary could not
// run as its shadow.
func (m *Mirror) dropCandidate(p *understudy.Prediction) {
	if m.store != nil {
		m.store.CountSkips(p.Model, p.Version, p.Time, 0, 1)
	}
	m.obs.Skipped(p.Model, p.Version, 0, 1)
}

// runPrimary runs the primary as the shadow of a request the candidate
// answered, stores the pair, and mirrors the request to the other shadows
// with the primary's answer.
func (m *Mirror) runPrimary(j job) {
	if m.base.Err() != nil || m.shedding(j.pred) {
		m.dropCandidate(j.pred)
		return
	}
	pm, cand := j.model, j.pred
	timeout := pm.Settings().Timeout
	ctx, cancel := context.WithTimeout(m.base, timeout)
	defer cancel()
	var stats understudy.RunStats
	start := time.Now()
	out, err := safeRun(understudy.WithRunStats(ctx, &stats), pm.Runner, pm.Signature, cand.Inputs)
	latency := stats.CPU
	if latency <= 0 {
		latency = time.Since(start)
	}
	if err != nil {
		// Without the primary's answer there is no pair: a failure here
		// is the primary's, not the candidate's, so nothing is stored
		// against the candidate.
		if m.base.Err() == nil && !errors.Is(err, context.DeadlineExceeded) {
			m.log.Warn().Err(err).Str("request_id", cand.ID).Str("primary", pm.Name).Msg("the primary failed as the shadow of a canary request; no pair stored")
		}
		m.dropCandidate(cand)
		return
	}
	res := &understudy.ShadowResult{RequestID: cand.ID, Time: time.Now(), Shadow: cand.Model, Version: cand.Version,
		Primary: pm.Name, PrimaryVersion: pm.Version, Outputs: cand.Outputs, Latency: cand.Latency, PrimaryLatency: latency,
		CPU: cand.CPU, Status: understudy.StatusOK, ServedBy: understudy.ServedCandidate,
		Compare: understudy.Compare(pm.Signature.Outputs, out, cand.Outputs)}
	if m.store != nil {
		m.store.WriteShadowResult(res)
	}
	m.obs.ShadowRun(res.Shadow, res.Version, res.Status, res.Latency)
	primary := &understudy.Prediction{ID: cand.ID, Time: cand.Time, Model: pm.Name, Version: pm.Version, Signature: &pm.Signature,
		Inputs: cand.Inputs, Outputs: out, Latency: latency, Status: understudy.StatusOK, ServedBy: understudy.ServedCandidate}
	m.submit(primary, pm.Signature.Outputs, cand.Model)
}
