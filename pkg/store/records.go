package store

import (
	"time"

	"github.com/understudy-ml/understudy/pkg/understudy"
)

// PairOrder orders the pairs Snapshot.Pairs returns.
type PairOrder int

// The orders of Pairs.
const (
	// ByTime is newest first (by the shadow row's time; among equal
	// times, the one stored last first).
	ByTime PairOrder = iota
	// ByDiff is largest per-pair max|Δ| first, and only pairs that have
	// one; among equal differences, which come first is unspecified.
	ByDiff
)

// DefaultPairLimit is the Limit of a PairFilter that sets none.
const DefaultPairLimit = 100

// PairFilter selects stored primary/shadow pairs.
type PairFilter struct {
	// Shadow and Version "" select every one.
	Shadow, Version string
	// Since and Until bound the shadow row's time to [Since, Until); zero
	// values leave that side open.
	Since, Until time.Time
	// DisagreeOnly keeps the pairs whose shadow run failed or timed out,
	// whose classes disagree (agreement < 1), or, when the pair has no
	// class output, whose max|Δ| is above Tolerance.
	DisagreeOnly bool
	Tolerance    float64
	Order        PairOrder
	// Limit is the most pairs returned; 0 means DefaultPairLimit.
	Limit int
}

// PairRecord is one stored pair with the request's inputs and both outputs
// as stored (JSON of EncodeTensors; empty when not stored). The fields of
// the prediction (Label, Inputs, PrimaryOutputs) are empty when its row is
// gone.
type PairRecord struct {
	RequestID                    string
	Time                         time.Time // when the shadow run finished
	Shadow, Version              string
	PrimaryModel, PrimaryVersion string
	Status, Error                string
	PrimaryClass, ShadowClass    *int64
	Agreement, MaxAbsDiff        *float64
	Latency                      time.Duration
	PrimaryLatency               *time.Duration
	Label                        *float64
	Inputs, PrimaryOutputs       string
	ShadowOutputs                string
	// Origin is one of understudy.Origins.
	Origin string
}

// StoredPrediction is a prediction row as stored, tensors as JSON.
type StoredPrediction struct {
	RequestID      string
	Time           time.Time
	Model, Version string
	// Inputs is "" when they were over the input cap; the hash and size
	// are always kept.
	Inputs       string
	InputsSHA256 string // hex sha256 of the inputs' EncodeTensors
	InputsSize   int    // bytes of the inputs' EncodeTensors
	Outputs      string // "" when the run failed
	Latency      time.Duration
	CPU          time.Duration // 0 if not measured
	Status       string
	Error        string
	Label        *float64
	LabelTime    time.Time // zero when unlabelled
}

// StoredShadowResult is a shadow row as stored, outputs as JSON.
type StoredShadowResult struct {
	Time                         time.Time
	Shadow, Version              string
	PrimaryModel, PrimaryVersion string
	Outputs                      string
	Latency                      time.Duration
	PrimaryLatency               *time.Duration // nil if stored without it
	CPU                          time.Duration  // 0 if not measured
	Status, Error                string
	Compare                      understudy.Comparison
	// Origin is one of understudy.Origins.
	Origin string
}

// StoredRequest is everything stored about one request.
type StoredRequest struct {
	// Prediction is nil when the prediction row was lost or deleted.
	Prediction *StoredPrediction
	// Shadows are ordered by shadow and version.
	Shadows []StoredShadowResult
}

// ModelRecord is one model version as the store has seen it.
type ModelRecord struct {
	Name      string
	Version   string
	SHA256    string
	File      string
	Size      int64
	Signature *understudy.Signature
	Metadata  *understudy.Metadata
	// FirstSeen is the time of the first RecordModel of this version,
	// LastSeen that of the latest.
	FirstSeen time.Time
	LastSeen  time.Time
	// MemoryBytes is the resident memory its load added; 0 if unknown. A
	// later RecordModel with 0 keeps the stored value.
	MemoryBytes int64
}

// EventFilter selects events; zero fields select everything.
type EventFilter struct {
	Model string
	Since time.Time
	Limit int // default 100
}
