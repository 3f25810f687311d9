package understudy

import (
	"context"
	"time"
)

// This file is the domain's side of lossless shadowing: a shadow job that
// shedding would drop is deferred into the store instead and run later
// from the stored inputs (backfill), and a newly loaded shadow is run on
// the stored traffic of its primary at once (backtest). Both read through
// History, which every store backend implements.

// Origins of a shadow result: when and why the shadow ran.
const (
	OriginLive     = "live"     // mirrored as the request was served
	OriginBackfill = "backfill" // deferred by shedding, run later from the stored inputs
	OriginBacktest = "backtest" // run on stored traffic when the shadow was loaded
)

// Origins lists the origins in display order.
var Origins = []string{OriginLive, OriginBackfill, OriginBacktest}

// StoredOrigin is the origin as stored: "" is live.
func StoredOrigin(o string) string {
	if o == "" {
		return OriginLive
	}
	return o
}

// Reasons a shadow job was finally dropped, as counted by CountDrops.
const (
	// DropShed: shed or the queue was full, and there was no backlog to
	// defer it to (--backfill-backlog 0). CountSkips's dropped jobs.
	DropShed = "shed"
	// DropBacklogFull: the backlog of deferred jobs was full.
	DropBacklogFull = "backlog_full"
	// DropNoInputs: deferred, but the request's inputs were not stored
	// (over the input cap, or the prediction row is gone).
	DropNoInputs = "inputs_not_stored"
	// DropExpired: deferred for longer than the backlog's age limit.
	DropExpired = "expired"
	// DropUnloaded: deferred, but that shadow version is no longer loaded.
	DropUnloaded = "shadow_unloaded"
	// DropNotBacktestable: a stored request a backtest could not run
	// because its inputs were over the input cap. Not a job of live
	// traffic: the report shows it apart from the drops.
	DropNotBacktestable = "not_backtestable"
)

// DeferredJob is a shadow job that shedding deferred: a shadow version to
// run on a stored request.
type DeferredJob struct {
	RequestID       string
	Shadow, Version string
	// Time is the request's time.
	Time time.Time
}

// StoredInput is a stored primary prediction as backfills and backtests
// replay it.
type StoredInput struct {
	RequestID      string
	Time           time.Time
	Model, Version string // the primary that answered
	// Inputs is nil when they were not stored (over the input cap).
	Inputs   map[string]*Tensor
	Outputs  map[string]*Tensor
	Latency  time.Duration
	ServedBy string
	// Label is the request's ground truth, when it has one.
	Label *float64
	// Paired says the request already has a result of the InputQuery's
	// PairedWith shadow version, of any origin; its tensors are then not
	// decoded (nil).
	Paired bool
}

// InputQuery selects stored ok predictions of one primary, newest first:
// those with time in [From, Before), or at Before with a request id below
// BeforeID, so that pages never skip or repeat rows that share a time.
// Zero From and Before leave that side open.
type InputQuery struct {
	Model    string
	From     time.Time
	Before   time.Time
	BeforeID string
	Limit    int
	// PairedWith, if set, marks the requests that already have a result
	// of this shadow version (StoredInput.Paired), so that a backtest
	// that resumes after a restart skips them without losing its place.
	PairedWith ModelRef
}

// History is what backfill and backtests read and write. Implementations
// must be safe for concurrent use; Defer and CountDrops never block, like
// the other writes of Store.
type History interface {
	// Defer adds a job to the backlog and counts it as deferred in its
	// shadow's skip counters at the request's minute. A job already
	// pending is not added twice. Writing a shadow result of origin
	// OriginBackfill removes its job from the backlog in the same
	// transaction, whether or not the result was a duplicate.
	Defer(j DeferredJob)
	// CountDrops adds n jobs of a shadow version dropped for reason at
	// the minute of at.
	CountDrops(shadow, version string, at time.Time, reason string, n int64)
	// Deferred returns up to limit pending jobs, oldest request first
	// (then by request id, shadow and version).
	Deferred(ctx context.Context, limit int) ([]DeferredJob, error)
	// PendingJobs counts the pending jobs.
	PendingJobs(ctx context.Context) (int64, error)
	// DropDeferred removes jobs from the backlog and counts each one as
	// dropped for reason at its request's minute, in one transaction.
	// Jobs no longer pending are ignored.
	DropDeferred(ctx context.Context, jobs []DeferredJob, reason string) error
	// StoredInputs returns the stored predictions of ids that exist,
	// keyed by request id, with tensors decoded.
	StoredInputs(ctx context.Context, ids []string) (map[string]*StoredInput, error)
	// RecentInputs returns up to q.Limit ok predictions that q selects,
	// newest first (by time, then request id, descending), with tensors
	// decoded; Inputs nil for those not stored.
	RecentInputs(ctx context.Context, q InputQuery) ([]*StoredInput, error)
}
