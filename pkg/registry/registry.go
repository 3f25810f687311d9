// Package registry owns the set of loaded models: which one is the primary,
// which are shadows, and which files failed. It watches the models directory,
// loads new files in the background, and promotes and rolls back. Models are
// reference-counted so that a session is never closed in the middle of a run.
package registry

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/understudy-ml/understudy/pkg/batch"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// Loader turns the bytes of a model file into a runnable model.
type Loader func(data []byte) (*understudy.LoadedModel, error)

// Settings control how a model is shadowed.
type Settings struct {
	// Sampling is the share of requests mirrored to the shadow, 0 to 1.
	Sampling float64
	// Timeout bounds one shadow run.
	Timeout time.Duration
	// Paused stops mirroring without unloading the model.
	Paused bool
}

func (s Settings) persisted() understudy.ShadowSettings {
	return understudy.ShadowSettings{Sampling: s.Sampling, TimeoutMS: s.Timeout.Milliseconds(), Paused: s.Paused}
}

func fromPersisted(s understudy.ShadowSettings) Settings {
	return Settings{Sampling: s.Sampling, Timeout: time.Duration(s.TimeoutMS) * time.Millisecond, Paused: s.Paused}
}

// Model is one loaded version of a model file.
type Model struct {
	understudy.ServingModel
	settings atomic.Pointer[Settings]
	info     understudy.ModelInfo // guarded by the registry's mu once registered
	// refs counts the registry's own reference plus one per in-flight use;
	// the session closes when it drops to zero.
	refs   atomic.Int64
	log    zerolog.Logger
	closed func()
	// primary is the model as the request path uses it: with its runner
	// wrapped in a batcher when requests are merged.
	primary understudy.ServingModel
	batcher *batch.Batcher
	noBatch string // why requests are not merged, when merging is on
}

// NewModel wraps a runner as a model that is not in any registry, with the
// given settings; the runner closes when the last reference is released.
func NewModel(name, version string, sig understudy.Signature, run understudy.Runner, set Settings) *Model {
	m := &Model{ServingModel: understudy.ServingModel{Name: name, Version: version, Signature: sig, Runner: run}}
	m.primary = m.ServingModel
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

// Ref names the model's version.
func (m *Model) Ref() understudy.ModelRef {
	return understudy.ModelRef{Name: m.Name, Version: m.Version}
}

// snapshot is the immutable serving state; request handlers load it without
// taking a lock.
type snapshot struct {
	primary *Model
	shadows []*Model
}

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

func (r *Registry) event(kind, name, version, actor, detail string) {
	ev := understudy.Event{Time: r.Now(), Kind: kind, Model: name, Version: version, Actor: actor, Detail: detail}
	if r.OnEvent != nil {
		r.OnEvent(ev)
	}
}

// deployment returns the state to persist. r.mu must be held.
func (r *Registry) deployment() understudy.Deployment {
	d := understudy.Deployment{Settings: map[string]understudy.ShadowSettings{}}
	if r.primary != nil {
		// With the content's full sha256, so that a replica follows only
		// the very same file.
		d.Primary, d.PrimarySHA256 = r.primary.Ref(), r.primary.info.SHA256
	}
	for _, m := range r.previous {
		d.Previous = append(d.Previous, m.Ref())
	}
	for name, s := range r.settings {
		d.Settings[name] = s.persisted()
	}
	return d
}

func (r *Registry) deployed() {
	if r.OnDeploy != nil {
		r.OnDeploy(r.deployment())
	}
}

// LoadDir loads every model file in the directory and picks the primary:
// the persisted one if its version is still on disk, else preferred if
// given, else the only model, else the oldest file. Persisted settings and
// the rollback stack are restored.
func (r *Registry) LoadDir(preferred string, persisted *understudy.Deployment) error {
	if persisted != nil {
		for name, s := range persisted.Settings {
			r.settings[name] = fromPersisted(s)
		}
	}
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
		st, err := os.Stat(filepath.Join(r.Dir, name+".onnx"))
		if err != nil || !st.Mode().IsRegular() {
			continue
		}
		fs := &fileState{size: st.Size(), mtime: st.ModTime(), stable: r.Now()}
		r.files[name] = fs
		r.loadFile(name, fs, "startup")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	primary, why, err := r.choosePrimary(preferred, persisted)
	if err != nil {
		return err
	}
	r.primary = primary
	if primary != nil {
		r.Log.Info().Str("model", primary.Name).Str("version", primary.Version).Str("reason", why).Msg("primary selected")
	}
	if persisted != nil {
		for _, ref := range persisted.Previous {
			if m := r.find(ref.Name, ref.Version); m != nil && m != primary {
				r.previous = append(r.previous, m)
			}
		}
	}
	r.publish()
	if r.Shared && persisted != nil && persisted.Primary.Name != "" {
		want := *persisted
		r.wanted = &want
		r.follow("startup")
		return nil
	}
	r.deployed()
	return nil
}

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

func (r *Registry) choosePrimary(preferred string, persisted *understudy.Deployment) (*Model, string, error) {
	if persisted != nil && persisted.Primary.Name != "" {
		if m := r.find(persisted.Primary.Name, persisted.Primary.Version); m != nil {
			return m, "restored from the database", nil
		}
		detail := fmt.Sprintf("the persisted primary %s@%s is no longer in %s; falling back to --primary or the oldest file",
			persisted.Primary.Name, persisted.Primary.Version, r.Dir)
		r.Log.Error().Str("model", persisted.Primary.Name).Str("version", persisted.Primary.Version).Msg(detail)
		r.event(understudy.EventFallback, persisted.Primary.Name, persisted.Primary.Version, "startup", detail)
	}
	if preferred != "" {
		if m := r.find(preferred, ""); m != nil {
			return m, "--primary", nil
		}
		if fs, ok := r.files[preferred]; ok && fs.failed != nil {
			return nil, "", fmt.Errorf("primary model %q failed to load: %s", preferred, fs.failed.Error)
		}
		return nil, "", fmt.Errorf("primary model %q: no file %s.onnx in %s", preferred, preferred, r.Dir)
	}
	if len(r.models) == 0 {
		return nil, "", nil
	}
	all := append([]*Model(nil), r.models...)
	if len(all) == 1 {
		return all[0], "the only model", nil
	}
	sort.Slice(all, func(i, j int) bool {
		// Whole seconds, so that files written together (a git checkout)
		// fall back to name order instead of nanosecond accidents.
		a, b := all[i].info.ModTime.Truncate(time.Second), all[j].info.ModTime.Truncate(time.Second)
		if !a.Equal(b) {
			return a.Before(b)
		}
		return all[i].Name < all[j].Name
	})
	return all[0], "the oldest file (pass --primary NAME to choose)", nil
}

// publish recomputes roles against the primary and swaps in a new snapshot.
// r.mu must be held.
func (r *Registry) publish() {
	s := &snapshot{primary: r.primary}
	sort.Slice(r.models, func(i, j int) bool {
		if r.models[i].Name != r.models[j].Name {
			return r.models[i].Name < r.models[j].Name
		}
		return r.models[i].info.LoadedAt.Before(r.models[j].info.LoadedAt)
	})
	for _, m := range r.models {
		switch {
		case m == r.primary:
			m.info.Role, m.info.Reason = understudy.RolePrimary, ""
		case r.primary == nil:
			m.info.Role, m.info.Reason = understudy.RoleShadow, ""
		default:
			if err := Compatible(r.primary.Signature, m.Signature); err != nil {
				if m.info.Role != understudy.RoleIncompatible || m.info.Reason != err.Error() {
					r.Log.Warn().Str("model", m.Name).Str("version", m.Version).Str("primary", r.primary.Name).Str("reason", err.Error()).Msg("shadow is incompatible with the primary and gets no traffic")
					r.event(understudy.EventIncompatible, m.Name, m.Version, "watcher", err.Error())
				}
				m.info.Role, m.info.Reason = understudy.RoleIncompatible, err.Error()
				continue
			}
			m.info.Role, m.info.Reason = understudy.RoleShadow, ""
			s.shadows = append(s.shadows, m)
		}
	}
	r.state.Store(s)
	if r.OnShadows != nil {
		r.OnShadows(len(s.shadows))
	}
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

// loadFile reads, hashes, loads and warms one file and registers the result:
// a new model version, or a failure. It runs without r.mu held.
func (r *Registry) loadFile(name string, fs *fileState, actor string) {
	path := filepath.Join(r.Dir, name+".onnx")
	// Scan may update the file's state meanwhile; it does so under r.mu.
	r.mu.Lock()
	size, mtime := fs.size, fs.mtime
	r.mu.Unlock()
	info := understudy.ModelInfo{Name: name, File: path, Role: understudy.RoleFailed, Size: size, ModTime: mtime}
	fail := func(err error) {
		info.Error = err.Error()
		r.Log.Error().Str("model", name).Str("file", path).Err(err).Msg("model failed to load; the other models keep serving")
		r.mu.Lock()
		fs.failed = &info
		fs.loading = false
		r.mu.Unlock()
		r.event(understudy.EventFailed, name, info.Version, actor, info.Error)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		fail(fmt.Errorf("read: %w", err))
		return
	}
	info.Size = int64(len(data))
	sum := sha256.Sum256(data)
	info.SHA256 = hex.EncodeToString(sum[:])
	info.Version = info.SHA256[:12]

	r.mu.Lock()
	prevSHA := fs.sha
	fs.sha = info.SHA256
	loaded := r.find(name, info.Version)
	r.mu.Unlock()
	if loaded != nil {
		// Same content as a version in memory (touched, or restored):
		// that version is what the file holds, and any other shadow
		// version of the name is stale, as after a load.
		r.mu.Lock()
		defer r.mu.Unlock()
		fs.loading, fs.failed = false, nil
		if !r.closed && r.retireStale(loaded, actor) {
			r.publish()
		}
		return
	}
	if prevSHA != "" && actor == "watcher" {
		r.event(understudy.EventFileChanged, name, info.Version, actor, "new content; loading it as a shadow next to what is serving")
	}

	start := r.Now()
	lm, err := r.safeLoad(data)
	if err != nil {
		fail(err)
		return
	}
	info.LoadTime = r.Now().Sub(start)
	info.MemoryBytes = lm.MemoryBytes
	sig, md := lm.Signature, lm.Metadata
	info.Signature, info.Metadata = &sig, &md
	m := &Model{
		ServingModel: understudy.ServingModel{Name: name, Version: info.Version, Signature: sig, Runner: lm.Runner},
		log:          r.Log,
		closed:       r.open.Done,
	}
	m.primary = m.ServingModel
	if r.MaxBatch > 1 {
		b, err := batch.New(lm.Runner, sig, batch.Options{MaxRows: r.MaxBatch, Slots: r.BatchSlots, BusySlots: r.BatchBusySlots, OnDisable: func(why string) {
			r.Log.Warn().Str("model", name).Str("version", info.Version).Str("reason", why).Msg("requests are no longer merged for this model")
		}})
		if err != nil {
			m.noBatch = err.Error()
		} else {
			m.batcher, m.primary.Runner = b, b
		}
	}
	r.open.Add(1)
	m.refs.Store(1)
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
		Str("producer", md.Producer).Str("actor", actor).Msg("model loaded")

	r.mu.Lock()
	defer r.mu.Unlock()
	fs.loading, fs.failed = false, nil
	if r.closed {
		m.Release()
		return
	}
	set, ok := r.settings[name]
	if !ok {
		set = r.Defaults
	}
	m.SetSettings(set)
	r.models = append(r.models, m)
	r.retireStale(m, actor)
	detail := fmt.Sprintf("load %.1f ms, warm-up %.1f ms", float64(info.LoadTime)/1e6, float64(info.WarmTime)/1e6)
	r.event(understudy.EventLoaded, name, m.Version, actor, detail)
	if r.OnModel != nil {
		r.OnModel(info)
	}
	if actor != "startup" {
		if r.primary == nil {
			r.primary = m
			r.Log.Info().Str("model", name).Str("version", m.Version).Msg("primary selected: the first model to load")
			r.deployed()
		}
		r.publish()
		// A shared deployment's primary whose file has just arrived.
		r.follow(actor)
	}
}

// retireStale unloads every other version of cur's name, except the
// primary and versions kept to roll back to: cur is what the file holds
// now. It reports whether it unloaded any. r.mu must be held.
func (r *Registry) retireStale(cur *Model, actor string) bool {
	retired := false
	// retire edits r.models; range over a copy.
	for _, old := range slices.Clone(r.models) {
		if old != cur && old.Name == cur.Name && old != r.primary && !r.inPrevious(old) {
			r.retire(old, actor, "replaced by version "+cur.Version)
			retired = true
		}
	}
	return retired
}

func (r *Registry) inPrevious(m *Model) bool {
	for _, p := range r.previous {
		if p == m {
			return true
		}
	}
	return false
}

// retire removes a model from serving; its session closes after its last
// run. r.mu must be held.
func (r *Registry) retire(m *Model, actor, why string) {
	for i, x := range r.models {
		if x == m {
			r.models = append(r.models[:i], r.models[i+1:]...)
			break
		}
	}
	for i, x := range r.previous {
		if x == m {
			r.previous = append(r.previous[:i], r.previous[i+1:]...)
			break
		}
	}
	r.Log.Info().Str("model", m.Name).Str("version", m.Version).Str("reason", why).Msg("model unloaded; its session closes after its last run")
	r.event(understudy.EventUnloaded, m.Name, m.Version, actor, why)
	m.Release()
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
			return &s.primary.primary, s.primary.Release, true
		}
	}
	return nil, nil, false
}

// Acquire implements understudy.Models: the primary when name and version
// name it ("" matches any), else an error that says why the name cannot
// answer: unknown (ENOTFOUND) or loaded but not serving, such as a shadow
// or a rollback target (ECONFLICT).
func (r *Registry) Acquire(name, version string) (*understudy.ServingModel, func(), error) {
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
			return &p.primary, p.Release, nil
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

// Close stops background loads, retires every model and waits until every
// session is closed, which happens as soon as the last run on it ends, or
// until ctx is done.
func (r *Registry) Close(ctx context.Context) error {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.loads.Wait()
	r.mu.Lock()
	r.state.Store(&snapshot{})
	for _, m := range r.models {
		m.Release()
	}
	r.models, r.primary, r.previous = nil, nil, nil
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
