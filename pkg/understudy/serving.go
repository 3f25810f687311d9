package understudy

import (
	"context"
	"time"
)

// ServingModel is a loaded model as the request path sees it.
type ServingModel struct {
	Name      string
	Version   string
	Signature Signature
	Runner    Runner
}

// Models is the set of models the server answers from.
type Models interface {
	// AcquirePrimary returns the primary and a release func that must be
	// called when the request is done with it; ok is false when no primary
	// is loaded.
	AcquirePrimary() (m *ServingModel, release func(), ok bool)
	// Acquire returns the primary if it has this name and version (""
	// matches any), with a release func like AcquirePrimary's. Otherwise
	// it says why not: ENOTFOUND for a name or version that is not
	// loaded, ECONFLICT for a loaded model that does not answer requests
	// (a shadow, a rollback target), EUNAVAILABLE when there is no primary.
	Acquire(name, version string) (m *ServingModel, release func(), err error)
	// List describes every model file, for GET /models.
	List() []ModelInfo
}

// Prediction is one answer of the primary, handed to observers (the shadow
// mirror, the store) after the response is written.
type Prediction struct {
	ID      string
	Time    time.Time
	Model   string
	Version string
	// Signature is the primary's, so observers can order outputs.
	Signature *Signature
	Inputs    map[string]*Tensor
	Outputs   map[string]*Tensor
	Latency   time.Duration
	// CPU is the CPU time the run took on its thread, when known.
	CPU      time.Duration
	Status   string // "ok" or "error"
	Error    string
	BodySize int
	// ServedBy says who answered a request routed to a canary:
	// ServedCandidate, or ServedFallback when the candidate failed and the
	// primary answered; "" (stored as ServedPrimary) for every other
	// request. Canary names the canary the request was routed to.
	ServedBy, Canary string
	// CanaryFailure is the candidate's failed run on a fallback, stored as
	// its pair (see canary.go).
	CanaryFailure *ShadowResult
}

type runStatsKey struct{}

// RunStats receives measurements of one run from the Runner.
type RunStats struct {
	// CPU is the CPU time of the run on the calling thread.
	CPU time.Duration
}

// WithRunStats asks the Runner to fill st during runs with the returned
// context; a context is the one channel a Runner has besides its result.
func WithRunStats(ctx context.Context, st *RunStats) context.Context {
	return context.WithValue(ctx, runStatsKey{}, st)
}

// RunStatsFrom returns the RunStats to fill, or nil.
func RunStatsFrom(ctx context.Context) *RunStats {
	st, _ := ctx.Value(runStatsKey{}).(*RunStats)
	return st
}
