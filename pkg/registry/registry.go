// Package registry owns the set of loaded models: which one is the primary,
// which are shadows, and which files failed. It watches the models directory,
// loads new files in the background, and promotes and rolls back. Models are
// reference-counted so that a session is never closed in the middle of a run.
// With a store shared by several replicas it follows the shared deployment.
//
// It imports the domain (pkg/understudy) and pkg/batch, which it puts in
// front of a primary whose requests are merged; never an adapter. Models are
// loaded through the Loader it is given (cmd passes ONNX Runtime's), and
// deployment changes, model versions and events leave through hooks
// (OnDeploy, OnModel, OnEvent) that cmd connects to the store, so it must
// not import pkg/onnx, a store backend, the HTTP or gRPC API, or the mirror.
package registry

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/understudy-ml/understudy/pkg/understudy"
)

// This file is the Registry and what it is asked: the primary and the
// shadows for the request path, the list for GET /models. Loading is in
// load.go, publishing and unloading in lifecycle.go, one model version and
// its reference count in model.go, the directory watch in watch.go,
// promotion in admin.go and following a shared deployment in follow.go.

// fileState is what the registry knows about one model file on disk.
type fileState struct {
	size    int64
	mtime   time.Time
	stable  time.Time // when size and mtime were first seen as they are now
	pending bool      // changed since the last load attempt
	loading bool
	sha     string // content of the last load attempt
	failed  *understudy.ModelInfo
	// gone is when a scan first missed the file. It is unloaded only once
	// it has stayed away for the settle interval: tar, rsync and many
	// editors delete a file and create it again.
	gone time.Time
}

// Registry is the set of models loaded from one directory.
type Registry struct {
	Dir    string
	Load   Loader
	Log    zerolog.Logger
	Now    func() time.Time
	Warmup bool
	// Defaults are the shadow settings of a model with none of its own.
	Defaults Settings
	// Settle is how long a new or changed file's size and modification
	// time must stay the same before it is loaded, so that a file still
	// being copied is never read half-written.
	Settle time.Duration
	// Rescan is the period of the full directory scan that backs up file
	// events, which can be missed (network filesystems, watch limits).
	Rescan time.Duration
	// OnEvent receives every lifecycle event, for storage.
	OnEvent func(understudy.Event)
	// OnDeploy receives the deployment whenever it changes, for storage.
	OnDeploy func(understudy.Deployment)
	// OnModel receives each model version when it is loaded, for storage.
	OnModel func(understudy.ModelInfo)
	// MaxBatch, when 2 or more, merges requests that wait for the primary
	// into runs of up to this many rows (see package batch); 0 or 1 runs
	// each request alone. Shadows always run each request alone.
	MaxBatch int
	// BatchSlots is how many runs of the primary may be in flight before
	// requests wait to be merged, and BatchBusySlots how many once they
	// pile up (see batch.Options).
	BatchSlots, BatchBusySlots int
	// OnShadows receives the number of shadows whenever the set is
	// republished. It is called with the registry's lock held and must not
	// call back into the registry.
	OnShadows func(n int)
	// Shared says the deployment is shared with other replicas through
	// the store: the registry then never saves it on its own at start, so
	// that a replica whose files differ cannot overwrite what the others
	// serve, and it follows the persisted primary as soon as it loads
	// (see Follow).
	Shared bool

	mu       sync.Mutex
	models   []*Model              // loaded versions
	files    map[string]*fileState // by name
	primary  *Model
	previous []*Model            // rollback stack, newest last
	settings map[string]Settings // by name
	state    atomic.Pointer[snapshot]
	open     sync.WaitGroup // one per session not yet closed
	// wanted is the shared deployment being followed, and syncWarning why
	// its primary is not the one serving here ("" when it is).
	wanted      *understudy.Deployment
	syncWarning string
	loads       sync.WaitGroup // background loads
	closed      bool
}

// New returns a registry for dir that loads files with load.
func New(dir string, load Loader, log zerolog.Logger) *Registry {
	return &Registry{
		Dir: dir, Load: load, Log: log, Now: time.Now, Warmup: true,
		Defaults: Settings{Sampling: 1, Timeout: 5 * time.Second},
		Settle:   time.Second,
		Rescan:   5 * time.Second,
		files:    map[string]*fileState{},
		settings: map[string]Settings{},
	}
}

// ModelName returns the model name for a file name, and whether the file is
// a model file at all: *.onnx that is not hidden or an editor temporary.
func ModelName(file string) (string, bool) {
	base := filepath.Base(file)
	if !strings.HasSuffix(base, ".onnx") || strings.HasPrefix(base, ".") || strings.HasPrefix(base, "~") || strings.HasPrefix(base, "#") {
		return "", false
	}
	name := strings.TrimSuffix(base, ".onnx")
	return name, ValidName(name)
}

// ValidName reports whether name can be a model name; see
// understudy.ValidModelName.
func ValidName(name string) bool { return understudy.ValidModelName(name) }

// find returns the loaded model with that name and version ("" = newest).
// r.mu must be held.
func (r *Registry) find(name, version string) *Model {
	var best *Model
	for _, m := range r.models {
		if m.Name != name || (version != "" && m.Version != version) {
			continue
		}
		if best == nil || m.info.LoadedAt.After(best.info.LoadedAt) {
			best = m
		}
	}
	return best
}

// AcquirePrimary implements understudy.Models.
func (r *Registry) AcquirePrimary() (*understudy.ServingModel, func(), bool) {
	for range 3 {
		s := r.state.Load()
		if s == nil || s.primary == nil {
			return nil, nil, false
		}
		// A failed Acquire means the primary was swapped out and retired
		// between the load and the acquire; the next snapshot has the new one.
		if s.primary.Acquire() {
			return &s.primary.primary, s.primary.release, true
		}
	}
	return nil, nil, false
}

// Acquire implements understudy.Models: the primary when name and version
// name it ("" matches any), else an error that says why the name cannot
// answer: unknown (ENOTFOUND) or loaded but not serving, such as a shadow
// or a rollback target (ECONFLICT).
func (r *Registry) Acquire(name, version string) (*understudy.ServingModel, func(), error) {
	if name == "" && version != "" {
		return nil, nil, understudy.Errorf(understudy.EINVALID, "model version %q is given without a model name; name the model too", version)
	}
	for range 3 {
		s := r.state.Load()
		if s == nil || s.primary == nil {
			break
		}
		p := s.primary
		if (name != "" && p.Name != name) || (version != "" && p.Version != version) {
			break
		}
		if p.Acquire() {
			return &p.primary, p.release, nil
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if name == "" {
		return nil, nil, understudy.Errorf(understudy.EUNAVAILABLE, "no primary model is loaded; add a .onnx file to the models directory or check GET /models for load errors")
	}
	m := r.find(name, version)
	if m == nil {
		return nil, nil, r.notLoaded(name, version)
	}
	primary := "none is loaded"
	if r.primary != nil {
		primary = fmt.Sprintf("the primary is %s@%s", r.primary.Name, r.primary.Version)
	}
	return nil, nil, understudy.Errorf(understudy.ECONFLICT, "model %s@%s is loaded as %s, not as the primary; only the primary answers inference requests, and shadows get copies of its traffic (%s)", m.Name, m.Version, m.info.Role, primary)
}

// Shadows returns the current shadows, each acquired; the caller releases them.
func (r *Registry) Shadows() []*Model {
	s := r.state.Load()
	if s == nil {
		return nil
	}
	out := make([]*Model, 0, len(s.shadows))
	for _, m := range s.shadows {
		if m.Acquire() {
			out = append(out, m)
		}
	}
	return out
}

// Ready reports whether a primary is loaded and warm.
func (r *Registry) Ready() bool {
	s := r.state.Load()
	return s != nil && s.primary != nil
}

// Primary returns the current primary's name and version.
func (r *Registry) Primary() (understudy.ModelRef, bool) {
	s := r.state.Load()
	if s == nil || s.primary == nil {
		return understudy.ModelRef{}, false
	}
	return s.primary.Ref(), true
}

// List implements understudy.Models.
func (r *Registry) List() []understudy.ModelInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]understudy.ModelInfo, 0, len(r.models)+len(r.files))
	for _, m := range r.models {
		info := m.info
		set := m.Settings()
		info.Sampling, info.TimeoutMS, info.Paused = &set.Sampling, set.Timeout.Milliseconds(), set.Paused
		info.Batching = r.batching(m)
		info.Canary = m.canaryInfo(set)
		out = append(out, info)
	}
	for _, fs := range r.files {
		if fs.failed != nil {
			out = append(out, *fs.failed)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		ri, rj := roleOrder(out[i].Role), roleOrder(out[j].Role)
		if ri != rj {
			return ri < rj
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// batching describes how m's requests are merged, nil when merging is off.
func (r *Registry) batching(m *Model) *understudy.Batching {
	switch {
	case r.MaxBatch < 2:
		return nil
	case m.batcher == nil:
		return &understudy.Batching{MaxRows: r.MaxBatch, Off: m.noBatch}
	}
	st := m.batcher.Stats()
	return &understudy.Batching{MaxRows: r.MaxBatch, MergedRuns: st.Runs, MergedRequests: st.Requests, Off: st.Disabled}
}

func roleOrder(r understudy.Role) int {
	switch r {
	case understudy.RolePrimary:
		return 0
	case understudy.RoleShadow:
		return 1
	case understudy.RoleIncompatible:
		return 2
	}
	return 3
}
