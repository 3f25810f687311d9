// Package serving is the request path that every front end shares: the
// plain JSON /predict, the Open Inference Protocol over REST and over gRPC.
// It acquires the model, runs it, and hands the prediction to the store and
// the shadows before the answer goes back, so that each front end only
// decodes and encodes. It knows the domain only; it must not import an
// adapter (http, grpc, onnx, sqlite).
package serving

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/understudy-ml/understudy/pkg/understudy"
)

// Service runs requests on the primary.
type Service struct {
	Models understudy.Models
	// OnPredict receives every prediction of the primary, failed runs
	// included, before the answer is written. It must not block.
	OnPredict func(*understudy.Prediction)
	// Canary, if set, returns the canary now taking a share of the
	// primary's traffic (see canary.go).
	Canary func() (understudy.CanaryRoute, bool)

	// arrived and ended count requests as Begin and its end see them;
	// their difference is the requests in flight.
	arrived, ended atomic.Int64
	cpu            cpuSampler
}

// InFlight returns how many requests are being read or run now, over every
// front end: the shadows' measure of how busy the primary is.
func (s *Service) InFlight() int64 {
	// ended first: both only grow, so the difference is never below the
	// requests in flight at the first load.
	e := s.ended.Load()
	return s.arrived.Load() - e
}

// Arrived returns how many requests have arrived since the start, so that
// a request that came and went between two looks at InFlight still shows.
func (s *Service) Arrived() int64 { return s.arrived.Load() }

// Begin counts a request as in flight from the moment it arrives, before
// its body is read. The Flight's End ends that, once; Infer calls it as
// soon as the run is over, so that handing the prediction to the shadows
// never finds the server busy with this very request.
func (s *Service) Begin() *Flight {
	s.arrived.Add(1)
	return &Flight{s: s}
}

// Flight is one request in flight. A struct with a method rather than a
// closure: one allocation per request instead of two.
type Flight struct {
	s    *Service
	done atomic.Bool
}

// End ends the flight; calls after the first, and calls on nil, do nothing.
func (f *Flight) End() {
	if f != nil && f.done.CompareAndSwap(false, true) {
		f.s.ended.Add(1)
	}
}

// Call is one inference request, decoded as far as the front end can
// without the model.
type Call struct {
	// ID is the request id, already checked with understudy.CheckRequestID.
	ID string
	// Model and Version name what the client asked for; empty means the
	// primary, whatever it is.
	Model, Version string
	// Received is when the request arrived.
	Received time.Time
	// BodySize is the size of the request as it came over the wire.
	BodySize int
	// Decode turns the request's inputs into tensors checked against the
	// model's signature.
	Decode func(sig *understudy.Signature) (map[string]*understudy.Tensor, error)
	// Flight is what Begin returned; Infer ends it when the run is over.
	// nil if the caller does not count requests in flight.
	Flight *Flight
	// Key routes the request to the canary or not, stably (the
	// X-Understudy-Key header); "" means the request id.
	Key string
}

// Answer is the primary's answer to a Call.
type Answer struct {
	Model   *understudy.ServingModel
	Outputs map[string]*understudy.Tensor
	Latency time.Duration
	// ServedBy is understudy.ServedCandidate when a canary answered,
	// ServedFallback when the primary answered after it failed, else "".
	ServedBy string
}

// Infer runs c on the primary and hands the prediction over. A model that
// fails on the input is handed over as a failed prediction and returned as
// the error; a client that went away during the run gets ctx's error, and
// nothing is stored.
func (s *Service) Infer(ctx context.Context, c Call) (Answer, error) {
	defer c.Flight.End()
	m, release, err := s.Models.Acquire(c.Model, c.Version)
	if err != nil {
		return Answer{}, err
	}
	defer release()
	inputs, err := c.Decode(&m.Signature)
	if err != nil {
		return Answer{}, err
	}
	var fb *understudy.ShadowResult
	if s.Canary != nil && c.Version == "" {
		ans, failure, done, err := s.canary(ctx, c, m, inputs)
		if done {
			return ans, err
		}
		fb = failure
	}
	var stats understudy.RunStats
	runCtx := ctx
	start := time.Now()
	if s.cpu.take(start) {
		runCtx = understudy.WithRunStats(ctx, &stats)
	}
	outputs, err := m.Runner.Run(runCtx, inputs)
	latency := time.Since(start)
	c.Flight.End()
	p := &understudy.Prediction{ID: c.ID, Time: c.Received, Model: m.Name, Version: m.Version, Signature: &m.Signature,
		Inputs: inputs, Latency: latency, CPU: stats.CPU, Status: understudy.StatusOK, BodySize: c.BodySize}
	if fb != nil {
		fb.PrimaryLatency = latency
		p.ServedBy, p.Canary, p.CanaryFailure = understudy.ServedFallback, fb.Shadow, fb
	}
	if err != nil {
		if ctx.Err() != nil {
			// The client is gone; nobody reads the answer.
			return Answer{}, ctx.Err()
		}
		p.Status, p.Error = understudy.StatusError, understudy.ErrorMessage(err)
		s.notify(p)
		return Answer{}, err
	}
	p.Outputs = outputs
	// Handed over before the client can read the answer: a label sent the
	// moment the answer arrives must find its prediction.
	s.notify(p)
	return Answer{Model: m, Outputs: outputs, Latency: latency, ServedBy: p.ServedBy}, nil
}

func (s *Service) notify(p *understudy.Prediction) {
	if s.OnPredict != nil {
		s.OnPredict(p)
	}
}

func init() {
	// Draw request ids' randomness in blocks rather than one system call
	// per request.
	uuid.EnableRandPool()
}

// NewID returns a new time-ordered request id (a UUIDv7).
func NewID() string {
	id, err := uuid.NewV7()
	if err != nil {
		return uuid.NewString()
	}
	return id.String()
}
