// Package registry owns the set of loaded models: which one is the primary,
// which are shadows, and which files failed. Models are reference-counted so
// that a session is never closed in the middle of a run.
package registry

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/understudy-ml/understudy/pkg/understudy"
)

// Loader turns the bytes of a model file into a runnable model.
type Loader func(data []byte) (*understudy.LoadedModel, error)

// Settings control how a model is shadowed.
type Settings struct {
	// Sampling is the share of requests mirrored to the shadow, 0 to 1.
	Sampling float64 `json:"sampling"`
	// Timeout bounds one shadow run.
	Timeout time.Duration `json:"-"`
	// Paused stops mirroring without unloading the model.
	Paused bool `json:"paused"`
}

// Model is one loaded version of a model file.
type Model struct {
	understudy.ServingModel
	settings atomic.Pointer[Settings]
	info     understudy.ModelInfo
	// refs counts the registry's own reference plus one per in-flight use;
	// the session closes when it drops to zero.
	refs   atomic.Int64
	log    zerolog.Logger
	closed func()
}

// NewModel wraps a runner as a model that is not in any registry, with the
// given settings; the runner closes when the last reference is released.
func NewModel(name, version string, sig understudy.Signature, run understudy.Runner, set Settings) *Model {
	m := &Model{ServingModel: understudy.ServingModel{Name: name, Version: version, Signature: sig, Runner: run}}
	m.info = understudy.ModelInfo{Name: name, Version: version, Role: understudy.RoleShadow, Signature: &sig}
	m.refs.Store(1)
	m.SetSettings(set)
	return m
}

// Acquire takes a reference; it fails once the model has been retired and
// all its users are gone.
func (m *Model) Acquire() bool {
	for {
		r := m.refs.Load()
		if r <= 0 {
			return false
		}
		if m.refs.CompareAndSwap(r, r+1) {
			return true
		}
	}
}

// Release drops a reference, closing the session after the last one.
func (m *Model) Release() {
	if m.refs.Add(-1) == 0 {
		if err := m.Runner.Close(); err != nil {
			m.log.Error().Err(err).Str("model", m.Name).Str("version", m.Version).Msg("close session")
		}
		if m.closed != nil {
			m.closed()
		}
	}
}

// Settings returns the model's current shadow settings.
func (m *Model) Settings() Settings { return *m.settings.Load() }

// SetSettings replaces the model's shadow settings.
func (m *Model) SetSettings(s Settings) { m.settings.Store(&s) }

// Info returns what is known about the model.
func (m *Model) Info() understudy.ModelInfo { return m.info }

// snapshot is the immutable serving state; request handlers load it without
// taking a lock.
type snapshot struct {
	primary *Model
	shadows []*Model
}

// Registry is the set of models loaded from one directory.
type Registry struct {
	Dir    string
	Load   Loader
	Log    zerolog.Logger
	Now    func() time.Time
	Warmup bool
	// Defaults are the shadow settings of a newly loaded model.
	Defaults Settings

	mu     sync.Mutex
	models map[string]*Model               // by name
	files  map[string]understudy.ModelInfo // failed or incompatible files, by name
	state  atomic.Pointer[snapshot]
	open   sync.WaitGroup // one per session not yet closed
}

// New returns a registry for dir that loads files with load.
func New(dir string, load Loader, log zerolog.Logger) *Registry {
	return &Registry{
		Dir: dir, Load: load, Log: log, Now: time.Now, Warmup: true,
		Defaults: Settings{Sampling: 1, Timeout: 5 * time.Second},
		models: map[string]*Model{},
		files:  map[string]understudy.ModelInfo{},
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
	return name, name != ""
}

// LoadDir loads every model file in the directory and picks the primary:
// preferred if given, else the only model, else the oldest file.
func (r *Registry) LoadDir(preferred string) error {
	entries, err := os.ReadDir(r.Dir)
	if err != nil {
		return fmt.Errorf("read models directory: %w", err)
	}
	var names []string
	for _, e := range entries {
		if name, ok := ModelName(e.Name()); ok {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		r.Log.Warn().Str("dir", r.Dir).Msg("no *.onnx files in the models directory; /predict answers 503 until one is added")
	}
	for _, name := range names {
		m, info := r.loadFile(name)
		r.mu.Lock()
		if m != nil {
			r.models[name] = m
		} else {
			r.files[name] = info
		}
		r.mu.Unlock()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	primary, why, err := r.choosePrimary(preferred)
	if err != nil {
		return err
	}
	if primary != nil {
		r.Log.Info().Str("model", primary.Name).Str("version", primary.Version).Str("reason", why).Msg("primary selected")
	}
	r.publish(primary)
	return nil
}

func (r *Registry) choosePrimary(preferred string) (*Model, string, error) {
	if preferred != "" {
		if m, ok := r.models[preferred]; ok {
			return m, "--primary", nil
		}
		if info, ok := r.files[preferred]; ok {
			return nil, "", fmt.Errorf("primary model %q failed to load: %s", preferred, info.Error)
		}
		return nil, "", fmt.Errorf("primary model %q: no file %s.onnx in %s", preferred, preferred, r.Dir)
	}
	if len(r.models) == 0 {
		return nil, "", nil
	}
	all := make([]*Model, 0, len(r.models))
	for _, m := range r.models {
		all = append(all, m)
	}
	if len(all) == 1 {
		return all[0], "the only model", nil
	}
	sort.Slice(all, func(i, j int) bool {
		a, b := all[i].info.ModTime, all[j].info.ModTime
		if !a.Equal(b) {
			return a.Before(b)
		}
		return all[i].Name < all[j].Name
	})
	return all[0], "the oldest file (pass --primary NAME to choose)", nil
}

// publish recomputes roles against the primary and swaps in a new snapshot.
// r.mu must be held.
func (r *Registry) publish(primary *Model) {
	s := &snapshot{primary: primary}
	names := make([]string, 0, len(r.models))
	for name := range r.models {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		m := r.models[name]
		switch {
		case m == primary:
			m.info.Role, m.info.Reason = understudy.RolePrimary, ""
		case primary == nil:
			m.info.Role, m.info.Reason = understudy.RoleShadow, ""
		default:
			if err := Compatible(primary.Signature, m.Signature); err != nil {
				if m.info.Role != understudy.RoleIncompatible || m.info.Reason != err.Error() {
					r.Log.Warn().Str("model", m.Name).Str("version", m.Version).Str("primary", primary.Name).Str("reason", err.Error()).Msg("shadow is incompatible with the primary and gets no traffic")
				}
				m.info.Role, m.info.Reason = understudy.RoleIncompatible, err.Error()
				continue
			}
			m.info.Role, m.info.Reason = understudy.RoleShadow, ""
			s.shadows = append(s.shadows, m)
		}
	}
	r.state.Store(s)
}

// Compatible says whether a shadow accepts the primary's inputs: every input
// of the shadow must exist in the primary with the same element type, rank,
// and dimensions that agree wherever both are fixed.
func Compatible(primary, shadow understudy.Signature) error {
	var problems []string
	for _, in := range shadow.Inputs {
		p, ok := primary.Input(in.Name)
		if !ok {
			problems = append(problems, fmt.Sprintf("input %q does not exist in the primary (which has %s)", in.Name, strings.Join(primary.InputNames(), ", ")))
			continue
		}
		if p.DType != in.DType {
			problems = append(problems, fmt.Sprintf("input %q is %v, the primary's is %v", in.Name, in.DType, p.DType))
			continue
		}
		if len(p.Dims) != len(in.Dims) {
			problems = append(problems, fmt.Sprintf("input %q has shape %s, the primary's has %s", in.Name, understudy.FormatShape(in.Dims), understudy.FormatShape(p.Dims)))
			continue
		}
		for i := range p.Dims {
			// A dynamic dimension on the shadow's side accepts anything; a
			// dynamic one on the primary's side may send sizes the shadow
			// refuses, so it must be dynamic there too.
			if in.Dims[i] >= 0 && p.Dims[i] != in.Dims[i] {
				problems = append(problems, fmt.Sprintf("input %q has shape %s, the primary's has %s", in.Name, understudy.FormatShape(in.Dims), understudy.FormatShape(p.Dims)))
				break
			}
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// loadFile reads, hashes, loads and warms one file. On failure it returns nil
// and the file's info with the error.
func (r *Registry) loadFile(name string) (*Model, understudy.ModelInfo) {
	path := filepath.Join(r.Dir, name+".onnx")
	info := understudy.ModelInfo{Name: name, File: path, Role: understudy.RoleFailed}
	fail := func(err error) (*Model, understudy.ModelInfo) {
		info.Error = err.Error()
		r.Log.Error().Str("model", name).Str("file", path).Err(err).Msg("model failed to load; the other models keep serving")
		return nil, info
	}
	st, err := os.Stat(path)
	if err != nil {
		return fail(fmt.Errorf("stat: %w", err))
	}
	info.Size, info.ModTime = st.Size(), st.ModTime()
	data, err := os.ReadFile(path)
	if err != nil {
		return fail(fmt.Errorf("read: %w", err))
	}
	info.Size = int64(len(data))
	sum := sha256.Sum256(data)
	info.SHA256 = hex.EncodeToString(sum[:])
	info.Version = info.SHA256[:12]
	start := r.Now()
	lm, err := r.safeLoad(data)
	if err != nil {
		return fail(err)
	}
	info.LoadTime = r.Now().Sub(start)
	sig, md := lm.Signature, lm.Metadata
	info.Signature, info.Metadata = &sig, &md
	m := &Model{
		ServingModel: understudy.ServingModel{Name: name, Version: info.Version, Signature: sig, Runner: lm.Runner},
		log:          r.Log,
		closed:       r.open.Done,
	}
	r.open.Add(1)
	m.refs.Store(1)
	m.SetSettings(r.Defaults)
	if r.Warmup {
		start = r.Now()
		if err := Warmup(m.Runner, sig); err != nil {
			info.Warnings = append(info.Warnings, "warm-up run failed: "+err.Error())
			r.Log.Warn().Str("model", name).Err(err).Msg("warm-up run failed; the model is loaded but its first request will be slow")
		}
		info.WarmTime = r.Now().Sub(start)
	}
	info.LoadedAt = r.Now()
	info.Role = understudy.RoleShadow
	m.info = info
	r.Log.Info().Str("model", name).Str("version", info.Version).Int64("size", info.Size).
		Dur("load", info.LoadTime).Dur("warmup", info.WarmTime).
		Int("inputs", len(sig.Inputs)).Int("outputs", len(sig.Outputs)).
		Str("producer", md.Producer).Msg("model loaded")
	return m, info
}

// safeLoad turns a panic in the loader into an error, so one bad file cannot
// take the server down.
func (r *Registry) safeLoad(data []byte) (lm *understudy.LoadedModel, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("load panicked: %v", p)
		}
	}()
	return r.Load(data)
}

// Warmup runs the model once on zeros, with batch size 1 for dynamic
// dimensions, so that the first real request does not pay for lazy
// initialisation.
func Warmup(run understudy.Runner, sig understudy.Signature) error {
	inputs := make(map[string]*understudy.Tensor, len(sig.Inputs))
	for _, in := range sig.Inputs {
		shape := make([]int64, len(in.Dims))
		for i, d := range in.Dims {
			if d < 0 {
				d = 1
			}
			shape[i] = d
		}
		t, err := understudy.NewTensor(in.DType, shape)
		if err != nil {
			return err
		}
		inputs[in.Name] = t
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := run.Run(ctx, inputs)
	return err
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
			return &s.primary.ServingModel, s.primary.Release, true
		}
	}
	return nil, nil, false
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

// List implements understudy.Models.
func (r *Registry) List() []understudy.ModelInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]understudy.ModelInfo, 0, len(r.models)+len(r.files))
	for _, m := range r.models {
		out = append(out, m.info)
	}
	for _, info := range r.files {
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool {
		ri, rj := roleOrder(out[i].Role), roleOrder(out[j].Role)
		if ri != rj {
			return ri < rj
		}
		return out[i].Name < out[j].Name
	})
	return out
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

// Close retires every model and waits until every session is closed, which
// happens as soon as the last run on it ends, or until ctx is done.
func (r *Registry) Close(ctx context.Context) error {
	r.mu.Lock()
	r.state.Store(&snapshot{})
	for name, m := range r.models {
		m.Release()
		delete(r.models, name)
	}
	r.mu.Unlock()
	done := make(chan struct{})
	go func() { r.open.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("sessions still in use after shutdown deadline: %w", ctx.Err())
	}
}
