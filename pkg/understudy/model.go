package understudy

import (
	"cmp"
	"context"
	"strings"
	"time"
)

// TensorInfo describes one input or output of a model.
type TensorInfo struct {
	Name  string  `json:"name"`
	DType DType   `json:"type"`
	Dims  []int64 `json:"dims"` // -1 marks a dynamic dimension
}

// Signature lists a model's inputs and outputs in the model's own order.
type Signature struct {
	Inputs  []TensorInfo `json:"inputs"`
	Outputs []TensorInfo `json:"outputs"`
}

// Input returns the input with the given name, if any.
func (s *Signature) Input(name string) (TensorInfo, bool) {
	for _, in := range s.Inputs {
		if in.Name == name {
			return in, true
		}
	}
	return TensorInfo{}, false
}

// InputNames returns the names of the inputs, in order.
func (s *Signature) InputNames() []string {
	names := make([]string, len(s.Inputs))
	for i, in := range s.Inputs {
		names[i] = in.Name
	}
	return names
}

// Metadata is what a model file says about itself.
type Metadata struct {
	Producer    string            `json:"producer,omitempty"`
	GraphName   string            `json:"graph_name,omitempty"`
	Domain      string            `json:"domain,omitempty"`
	Description string            `json:"description,omitempty"`
	Version     int64             `json:"version"`
	Custom      map[string]string `json:"custom,omitempty"`
}

// ValidModelName reports whether name can be a model name: a plain file
// stem that cannot reach outside the models directory.
func ValidModelName(name string) bool {
	if name == "" || name == "." || name == ".." || len(name) > 200 {
		return false
	}
	return !strings.ContainsAny(name, "/\\\x00")
}

// Role is the part a model plays in serving.
type Role string

// The roles a model file can have.
const (
	RolePrimary      Role = "primary"
	RoleShadow       Role = "shadow"
	RoleIncompatible Role = "incompatible"
	RoleFailed       Role = "failed"
)

// ModelInfo is everything known about one model file, as listed by GET /models.
type ModelInfo struct {
	Name    string `json:"name"`
	Version string `json:"version,omitempty"` // first 12 hex digits of the file's sha256
	SHA256  string `json:"sha256,omitempty"`
	Role    Role   `json:"role"`
	File    string `json:"file"`
	Size    int64  `json:"size"`
	// MemoryBytes is how much the process's resident memory grew while
	// the model loaded (approximate: other allocations count too).
	MemoryBytes int64         `json:"memory_bytes,omitempty"`
	ModTime     time.Time     `json:"mtime"`
	LoadedAt    time.Time     `json:"loaded_at,omitzero"`
	LoadTime    time.Duration `json:"-"`
	WarmTime    time.Duration `json:"-"`
	Signature   *Signature    `json:"signature,omitempty"`
	Metadata    *Metadata     `json:"metadata,omitempty"`
	Error       string        `json:"error,omitempty"`
	Reason      string        `json:"reason,omitempty"` // why a model is incompatible
	Warnings    []string      `json:"warnings,omitempty"`
	// Batching says how requests to this model are merged when it is the
	// primary; nil when merging is off.
	Batching *Batching `json:"batching,omitempty"`
	// Shadow settings, for loaded models.
	Sampling  *float64 `json:"sampling,omitempty"`
	TimeoutMS int64    `json:"timeout_ms,omitempty"`
	Paused    bool     `json:"paused,omitempty"`
	// Canary is the model's canary state; nil unless its mode is canary.
	Canary *CanaryInfo `json:"canary,omitempty"`
}

// Batching describes how waiting requests to a primary are merged into
// shared runs (--max-batch).
type Batching struct {
	MaxRows int `json:"max_rows"`
	// MergedRuns counts runs that answered two requests or more, and
	// MergedRequests the requests they answered.
	MergedRuns     int64 `json:"merged_runs"`
	MergedRequests int64 `json:"merged_requests"`
	// Off says why this model's requests are never merged, if they are not.
	Off string `json:"off,omitempty"`
}

// Runner runs inference. Implementations must be safe for concurrent use and
// must stop a run promptly when ctx is done, returning an error that wraps
// ctx.Err().
type Runner interface {
	Run(ctx context.Context, inputs map[string]*Tensor) (map[string]*Tensor, error)
	Close() error
}

// LoadedModel is a model file turned into a Runner, with what was read at load.
type LoadedModel struct {
	Runner    Runner
	Signature Signature
	Metadata  Metadata
	// MemoryBytes is the growth of resident memory during the load.
	MemoryBytes int64
}

// Event kinds in a model's lifecycle.
const (
	EventLoaded       = "loaded"
	EventFailed       = "failed"
	EventIncompatible = "incompatible"
	EventPromoted     = "promoted"
	EventRolledBack   = "rolled_back"
	EventUnloaded     = "unloaded"
	EventFileChanged  = "file_changed"
	EventFileRemoved  = "file_removed"
	EventSettings     = "settings"
	EventFallback     = "primary_fallback"
	// EventBacktest: a shadow version was run on stored traffic; the
	// detail says how many requests and how long.
	EventBacktest = "backtest"
)

// Event is one thing that happened to a model, for GET /events and the report.
type Event struct {
	ID      int64     `json:"id,omitempty"`
	Time    time.Time `json:"time"`
	Kind    string    `json:"kind"`
	Model   string    `json:"model"`
	Version string    `json:"version,omitempty"`
	Actor   string    `json:"actor"` // admin, watcher or startup
	Detail  string    `json:"detail,omitempty"`
	// Replica is the id of the replica the event happened on, when
	// several share a store.
	Replica string `json:"replica,omitempty"`
}

// ModelRef names one version of a model.
type ModelRef struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// CompareRefs orders model versions by name, then version, byte-wise as
// the stores' "C" collation does.
func CompareRefs(a, b ModelRef) int {
	return cmp.Or(strings.Compare(a.Name, b.Name), strings.Compare(a.Version, b.Version))
}

// ShadowSettings control how a model is shadowed.
type ShadowSettings struct {
	// Sampling is the share of requests mirrored, 0 to 1.
	Sampling float64 `json:"sampling"`
	// TimeoutMS bounds one shadow run, in milliseconds.
	TimeoutMS int64 `json:"timeout_ms"`
	// Paused stops mirroring without unloading the model.
	Paused bool `json:"paused"`
	// CanarySettings, flattened: mode, weight and the guard (canary.go).
	CanarySettings
}

// Deployment is the state that survives a restart: which version serves,
// what to roll back to, and each model's shadow settings (by name).
type Deployment struct {
	Primary ModelRef `json:"primary"`
	// PrimarySHA256 is the primary file's whole digest, so that a replica
	// following the deployment serves only the very same content.
	PrimarySHA256 string                    `json:"primary_sha256,omitempty"`
	Previous      []ModelRef                `json:"previous,omitempty"` // rollback stack, newest last
	Settings      map[string]ShadowSettings `json:"settings,omitempty"`
}

// SettingsPatch changes some of a model's shadow settings; nil fields stay.
type SettingsPatch struct {
	Sampling  *float64 `json:"sampling"`
	TimeoutMS *int64   `json:"timeout_ms"`
	Paused    *bool    `json:"paused"`
	CanaryPatch
}
