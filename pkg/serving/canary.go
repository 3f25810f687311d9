package serving

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/understudy-ml/understudy/pkg/understudy"
)

// This file routes a weighted share of keys to the canary, on the request
// path, with its guard: a candidate that errors or times out never shows
// it to the client, who gets the primary's answer, run at once. The
// outcome feeds the registry's guard, and the prediction hands the mirror
// what it needs to store the pair the other way round: for a request the
// candidate answered, the primary runs off the path as its shadow.

// canary runs c on the canary when its key falls in the canary's share.
// done says the request is answered (or failed for a reason the primary
// would share: the client went away). When the candidate failed it returns
// its failed run, for the caller to run the primary and store the pair.
func (s *Service) canary(ctx context.Context, c Call, primary *understudy.ServingModel, inputs map[string]*understudy.Tensor) (ans Answer, failure *understudy.ShadowResult, done bool, err error) {
	route, ok := s.Canary()
	if !ok {
		return Answer{}, nil, false, nil
	}
	defer route.Release()
	key := c.Key
	if key == "" {
		key = c.ID
	}
	if understudy.KeyFraction(key) >= route.Weight {
		return Answer{}, nil, false, nil
	}
	cm := route.Model
	runCtx, cancel := context.WithTimeout(ctx, route.Timeout)
	start := time.Now()
	out, err := guardedRun(runCtx, cm, inputs)
	latency := time.Since(start)
	cancel()
	if err == nil {
		route.Outcome(true)
		c.Flight.End()
		s.notify(&understudy.Prediction{ID: c.ID, Time: c.Received, Model: cm.Name, Version: cm.Version, Signature: &cm.Signature,
			Inputs: inputs, Outputs: out, Latency: latency, Status: understudy.StatusOK, BodySize: c.BodySize,
			ServedBy: understudy.ServedCandidate, Canary: cm.Name})
		return Answer{Model: cm, Outputs: out, Latency: latency, ServedBy: understudy.ServedCandidate}, nil, true, nil
	}
	if ctx.Err() != nil {
		// The client is gone: not the candidate's fault, and nobody reads
		// the answer.
		return Answer{}, nil, true, ctx.Err()
	}
	route.Outcome(false)
	res := &understudy.ShadowResult{RequestID: c.ID, Time: time.Now(), Shadow: cm.Name, Version: cm.Version,
		Primary: primary.Name, PrimaryVersion: primary.Version, Latency: latency,
		Status: understudy.StatusError, Error: understudy.ErrorMessage(err), ServedBy: understudy.ServedFallback}
	if errors.Is(err, context.DeadlineExceeded) {
		res.Status, res.Error = understudy.StatusTimeout, fmt.Sprintf("terminated after the %v timeout", route.Timeout)
	}
	return Answer{}, res, false, nil
}

// guardedRun runs the candidate on the inputs it declares (a shadow may
// take fewer than the primary), turning a panic into an error: the guard
// must catch every failure.
func guardedRun(ctx context.Context, m *understudy.ServingModel, inputs map[string]*understudy.Tensor) (out map[string]*understudy.Tensor, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("canary run panicked: %v", p)
		}
	}()
	in := inputs
	if len(m.Signature.Inputs) != len(inputs) {
		in = make(map[string]*understudy.Tensor, len(m.Signature.Inputs))
		for _, ti := range m.Signature.Inputs {
			in[ti.Name] = inputs[ti.Name]
		}
	}
	return m.Runner.Run(ctx, in)
}
