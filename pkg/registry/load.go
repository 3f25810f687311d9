package registry

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/understudy-ml/understudy/pkg/batch"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// This file loads model files: the whole directory at start (LoadDir, and the
// choice of the first primary), and one file at a time after that (loadFile),
// each read, hashed, loaded through the Loader with its panics caught, warmed
// up and registered as a new version or as a failure.

// Loader turns the bytes of a model file into a runnable model.
type Loader func(data []byte) (*understudy.LoadedModel, error)

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
	m.release = m.Release
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
			// A replica following a shared deployment serves this model
			// only until it has the shared primary: its own choice must
			// never overwrite what the others serve.
			if r.wanted == nil {
				r.deployed()
			}
		}
		r.publish()
		// A shared deployment's primary whose file has just arrived.
		r.follow(actor)
	}
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
