package understudy

import (
	"context"
	"time"
)

// Shadow run statuses.
const (
	StatusOK      = "ok"
	StatusError   = "error"
	StatusTimeout = "timeout"
)

// Output comparison kinds.
const (
	KindClass        = "class"        // compared by predicted class per row
	KindFloat        = "float"        // compared by absolute difference
	KindIncomparable = "incomparable" // recorded with the reason
)

// OutputComparison compares one output that both models produce.
type OutputComparison struct {
	Name string `json:"name"`
	Kind string `json:"kind"`
	// Reason says why an output could not be compared.
	Reason string `json:"reason,omitempty"`
	// Rows is the number of rows compared for class outputs.
	Rows int `json:"rows,omitempty"`
	// Agree is the number of rows whose predicted class is the same.
	Agree int `json:"agree,omitempty"`
	// PrimaryClasses and ShadowClasses are the predicted class per row.
	PrimaryClasses []int64 `json:"primary_classes,omitempty"`
	ShadowClasses  []int64 `json:"shadow_classes,omitempty"`
	// MaxAbsDiff and MeanAbsDiff are over all elements of a float output.
	MaxAbsDiff  *float64 `json:"max_abs_diff,omitempty"`
	MeanAbsDiff *float64 `json:"mean_abs_diff,omitempty"`

	sumSq    *float64
	elements int
}

// Comparison is the comparison of one primary/shadow pair of answers.
type Comparison struct {
	Outputs []OutputComparison `json:"outputs"`
	// Agreement is the fraction of rows whose class agrees, over the
	// pair's first class output; nil when there is none.
	Agreement *float64 `json:"agreement,omitempty"`
	// PrimaryClass and ShadowClass are the first row's classes of that
	// output, kept in their own columns so reports can build confusion
	// matrices without parsing JSON.
	PrimaryClass *int64 `json:"primary_class,omitempty"`
	ShadowClass  *int64 `json:"shadow_class,omitempty"`
	// MaxAbsDiff, MeanAbsDiff and SumSqDiff are over the Elements elements
	// of the first float output.
	MaxAbsDiff  *float64 `json:"max_abs_diff,omitempty"`
	MeanAbsDiff *float64 `json:"mean_abs_diff,omitempty"`
	SumSqDiff   *float64 `json:"sum_sq_diff,omitempty"`
	Elements    int      `json:"elements,omitempty"`
	// PrimaryScore and ShadowScore are the first row's top score of the
	// first float output (its first element if it has no class axis), for
	// comparing score distributions.
	PrimaryScore *float64 `json:"primary_score,omitempty"`
	ShadowScore  *float64 `json:"shadow_score,omitempty"`
}

// ShadowResult is one shadow's answer to a mirrored request.
type ShadowResult struct {
	RequestID string
	Time      time.Time // when the shadow run finished
	Shadow    string
	Version   string
	// Primary and PrimaryVersion name the model the shadow was compared
	// with, so the row stands on its own when the prediction row is gone.
	Primary        string
	PrimaryVersion string
	Outputs        map[string]*Tensor
	Latency        time.Duration
	// PrimaryLatency is the primary's latency on the same request, stored
	// with the pair so that latency ratios need no join.
	PrimaryLatency time.Duration
	// CPU is the CPU time the run took on its thread, when known.
	CPU     time.Duration
	Status  string // StatusOK, StatusError or StatusTimeout
	Error   string
	Compare Comparison
	// ServedBy says who answered the user for this request: ServedPrimary
	// (also ""), ServedCandidate or ServedFallback.
	ServedBy string
	// Origin says when the shadow ran: OriginLive (also "") as the request
	// was served, OriginBackfill later from the stored inputs because
	// shedding deferred the job, or OriginBacktest on stored traffic when
	// the shadow was loaded. A backfill or backtest result carries the
	// request's time as its Time, so that every window counts a request's
	// pairs with the request, whenever they ran.
	Origin string
}

// Store persists predictions, shadow results and model history. The write
// methods never block the caller: rows are queued for a background writer,
// and rows that cannot be queued or written are counted as lost. It is the
// write side of the whole storage contract, store.Store, which embeds it
// and which every backend implements.
type Store interface {
	WritePrediction(p *Prediction)
	WriteShadowResult(r *ShadowResult)
	// CountSkips adds sampled-out and dropped jobs of one shadow to the
	// per-minute counters; the dropped ones are counted for DropShed.
	CountSkips(shadow, version string, at time.Time, sampledOut, dropped int64)
	// RecordModel upserts a model version with first and last seen times.
	RecordModel(ctx context.Context, m ModelInfo) error
	// SetLabels attaches ground truth to requests. It fails with
	// ENOTFOUND naming the unknown ids, and reports ids whose earlier
	// label was replaced.
	SetLabels(ctx context.Context, labels []Label) (replaced []Label, err error)
	// Flush waits until every queued row is written or ctx is done.
	Flush(ctx context.Context) error
	Close() error
}

// Label is ground truth for one request: a class (integer) or a number.
type Label struct {
	ID    string  `json:"id"`
	Value float64 `json:"label"`
	// Previous is the label that was replaced, if any.
	Previous *float64 `json:"previous,omitempty"`
}
