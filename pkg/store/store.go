package store

import (
	"context"
	"time"

	"github.com/understudy-ml/understudy/pkg/understudy"
)

// Store is a storage backend: everything Understudy writes and reads. It
// extends understudy.Store, the write side that the request path and the
// shadows see, with the lifecycle, the reads of the report and retention.
//
// Implementations must be safe for concurrent use. The methods of
// understudy.Store that take no context never block; a row that cannot be
// queued or written is counted in Stats as lost, never returned as an
// error. Times are stored to the microsecond. Every method but Stats,
// Flush and Close may fail once Close was called.
type Store interface {
	understudy.Store
	understudy.History
	Lifecycle
	Reader

	// ApplyRetention deletes what p does not keep and returns how many
	// predictions, shadow results and skip counters it deleted. Rollups are
	// trimmed in whole days, so that minutes, hours and days still add up
	// to the same counts: the rollups of every span that end by the start
	// of a day are deleted, and those of that day and later stay whole. For
	// p.Days that day holds the cutoff; for p.Rows, the oldest row kept.
	// A backend may also apply retention on its own, with the policy it was
	// opened with.
	ApplyRetention(ctx context.Context, p Retention) (deleted int64, err error)
	// Stats returns the counters of the rows handed to the store.
	Stats() Stats
}

// Lifecycle stores what happens to models and what survives a restart.
type Lifecycle interface {
	// RecordEvent stores one lifecycle event; its ID is assigned by the
	// store.
	RecordEvent(ctx context.Context, ev understudy.Event) error
	// SaveDeployment replaces the persisted deployment state.
	SaveDeployment(ctx context.Context, d understudy.Deployment) error
	// LoadDeployment returns the persisted deployment, or nil and no error
	// if none was saved.
	LoadDeployment(ctx context.Context) (*understudy.Deployment, error)
}

// DeploymentWatcher is implemented by a backend that several replicas
// share, such as PostgreSQL: it tells a replica when another one saved a
// new deployment, so that it can follow it (registry.Follow). A backend
// that only one process opens (SQLite) does not implement it.
type DeploymentWatcher interface {
	// WatchDeployment calls fn with the deployment as loaded after each
	// change saved through any store on the same database (this one's
	// included), in the order seen, until ctx is done; it then returns
	// ctx's error. fn runs on the watcher's goroutine: a slow fn delays
	// the next call, and changes saved meanwhile may be seen as one.
	WatchDeployment(ctx context.Context, fn func(understudy.Deployment)) error
}

// Reader is what the report, the pairs export and the request page read.
type Reader interface {
	// Snapshot starts a consistent read: every read through it sees the
	// same committed state. It must not block the writer for long; close
	// it when done.
	Snapshot(ctx context.Context) (Snapshot, error)
	// Models returns every recorded model version, ordered by name, then
	// first sighting, then version.
	Models(ctx context.Context) ([]ModelRecord, error)
	// Events returns the events f selects, newest first (by time, then by
	// ID, the order they were recorded in).
	Events(ctx context.Context, f EventFilter) ([]understudy.Event, error)
}

// Snapshot is a read transaction: every method sees the same committed
// state, the one of its first read, whatever is written meanwhile. Windows [from, to) of rollup reads are widened to whole minutes,
// from rounded down and to rounded up; a zero from or to leaves that side
// open. Windows of raw-row reads are exact, to the microsecond.
type Snapshot interface {
	// LatestPrediction returns the model and version of the newest
	// prediction; ok is false when there is none.
	LatestPrediction(ctx context.Context) (m understudy.ModelRef, ok bool, err error)
	// PrimaryCounts returns the primary rollups of the minutes covering
	// [from, to), one per model version, ordered by model and version.
	PrimaryCounts(ctx context.Context, from, to time.Time) ([]PrimaryCounts, error)
	// ShadowVersions returns every shadow version that has rollups, at any
	// time, ordered by name and version.
	ShadowVersions(ctx context.Context) ([]understudy.ModelRef, error)
	// ShadowSpan returns the start of the first minute with shadow rollups
	// of a shadow and version ("" for every one); ok is false when there is
	// none.
	ShadowSpan(ctx context.Context, shadow, version string) (first time.Time, ok bool, err error)
	// ShadowSummaries returns the rollups of each shadow version with data
	// in the filter's window, ordered by shadow and version.
	ShadowSummaries(ctx context.Context, f RollupFilter) ([]ShadowSummary, error)
	// Confusion returns the class rollups of a shadow version over the
	// minutes covering [from, to), ordered by primary class, then shadow
	// class, without empty cells.
	Confusion(ctx context.Context, shadow, version string, from, to time.Time) ([]ConfusionCell, error)
	// SkipCounts returns a shadow version's sampled-out, deferred and
	// dropped jobs over the minutes covering [from, to), by the request's
	// minute. Whatever the snapshot's origin, it counts every origin.
	SkipCounts(ctx context.Context, shadow, version string, from, to time.Time) (Skips, error)
	// Pending counts a shadow version's jobs still in the backlog whose
	// request time is in [from, to) (exact).
	Pending(ctx context.Context, shadow, version string, from, to time.Time) (int64, error)
	// Origin returns a view of the same snapshot in which every read of
	// shadow rows and their rollups (ShadowVersions, ShadowSpan,
	// ShadowSummaries, Confusion, PairSamples, Scores, Accuracy,
	// OutputNames, Pairs, Request) sees only results of origin o, one of
	// understudy.Origins; "" sees all. Reads of predictions, skips and
	// the backlog are unchanged. Closing the view does nothing: close the
	// snapshot it came from.
	Origin(o string) Snapshot
	// PairSamples reads the latencies and differences of every ok pair of
	// a shadow version in [from, to), in no particular order. It reads
	// every row: for windows of a few hundred thousand pairs at most.
	PairSamples(ctx context.Context, shadow, version string, from, to time.Time) (*PairSamples, error)
	// Scores returns the primary's and the shadow's top scores of the
	// newest limit ok pairs of a shadow version in [from, to) that have
	// both, newest first.
	Scores(ctx context.Context, shadow, version string, from, to time.Time, limit int) (primary, shadowScores []float64, err error)
	// Accuracy compares a shadow version with the primary on the labelled
	// requests whose prediction time is in [from, to) and whose shadow run
	// is ok (see AccuracyCounts). Its cost should grow with the labelled
	// requests of the window, not with all of them.
	Accuracy(ctx context.Context, shadow, version string, from, to time.Time) (AccuracyCounts, error)
	// OutputNames returns HeadlineOutputs of the comparison of a shadow
	// version's newest ok pair in [from, to); "" when there is none.
	OutputNames(ctx context.Context, shadow, version string, from, to time.Time) (class, float string, err error)
	// Pairs returns the pairs f selects, in f's order (see PairFilter).
	Pairs(ctx context.Context, f PairFilter) ([]PairRecord, error)
	// Request returns everything stored about a request, or an error
	// with code understudy.ENOTFOUND when nothing is.
	Request(ctx context.Context, requestID string) (*StoredRequest, error)
	// Replicas returns each replica's share of the traffic over the
	// minutes covering [from, to), ordered by replica id: what the
	// replicas sharing a store each stored there.
	Replicas(ctx context.Context, from, to time.Time) ([]ReplicaCounts, error)
	// ServedCounts returns, per canary version, the requests it answered
	// and its fallbacks with row times in [from, to) (exact, from the raw
	// rows), ordered by model and version; see served.go.
	ServedCounts(ctx context.Context, from, to time.Time) ([]ServedCounts, error)
	// Close ends the snapshot. It is safe to call twice.
	Close() error
}

// Skips are a shadow version's jobs that did not run live.
type Skips struct {
	// SampledOut were not mirrored because of the sampling rate.
	SampledOut int64
	// Deferred were deferred by shedding into the backlog; each of them
	// then ran (a backfill pair), is still pending, or was dropped.
	Deferred int64
	// Dropped were finally dropped, for the reasons counted in Reasons
	// (understudy.Drop*), which add up to Dropped.
	Dropped int64
	Reasons map[string]int64
}

// ReplicaCounts is one replica's share of the stored traffic in a window.
// A replica is named by the id it was opened with (its Options' Replica);
// "" for rows stored before replicas were recorded.
type ReplicaCounts struct {
	Replica string
	// Requests counts the primary's predictions the replica stored, and
	// Errors those that failed.
	Requests, Errors int64
	// Pairs counts the shadow results it stored.
	Pairs int64
	// First and Last are the starts of its first and last minutes with
	// stored rows in the window.
	First, Last time.Time
}

// CommitObserver is told of each batch a backend's writer commits: how many
// rows, how long the transaction took, and its error if it failed. Backends
// take one in their options, for metrics; it must be cheap.
type CommitObserver func(rows int, took time.Duration, err error)

// Retention says which rows to keep.
type Retention struct {
	// Days deletes predictions, shadow results and skip counters older
	// than this many days before Now. 0 keeps them.
	Days int
	// Rows keeps only the newest Rows predictions and the newest Rows
	// shadow results, by time; rows sharing the time of the oldest one kept
	// are kept too. 0 keeps them all.
	Rows int64
	// Now is when Days counts back from; zero means the current time.
	Now time.Time
}

// Stats are a store's counters, for export as metrics.
type Stats struct {
	Predictions   TableStats
	ShadowResults TableStats
	// Skips counts CountSkips calls that had something to count; calls
	// for the same shadow, version and minute add up in one stored row.
	Skips TableStats
	// QueueDepth is the number of rows waiting for the writer, out of
	// QueueCapacity: a writer that cannot keep up shows here first.
	QueueDepth    int
	QueueCapacity int
	// Batches and FailedBatches count the writer's transactions.
	Batches       int64
	FailedBatches int64
}

// TableStats counts what happened to the rows handed to the store for one
// table. Every row ends up in exactly one of Written, Duplicate and Lost.
type TableStats struct {
	Written   int64 // committed
	Duplicate int64 // ignored because its key was already stored
	Lost      int64 // queue full, store closed, or the write failed
	Deleted   int64 // removed by retention
}
