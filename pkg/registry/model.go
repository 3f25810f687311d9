package registry

import (
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/understudy-ml/understudy/pkg/batch"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// This file is one loaded model version: its shadow Settings and their
// persisted form, and the reference count that keeps its session open until
// the last run on it ends.

// Settings control how a model is shadowed.
type Settings struct {
	// Sampling is the share of requests mirrored to the shadow, 0 to 1.
	Sampling float64
	// Timeout bounds one shadow run.
	Timeout time.Duration
	// Paused stops mirroring without unloading the model.
	Paused bool
	// Canary is the model's canary mode, weight and guard (canary.go).
	Canary understudy.CanarySettings
}

func (s Settings) persisted() understudy.ShadowSettings {
	return understudy.ShadowSettings{Sampling: s.Sampling, TimeoutMS: s.Timeout.Milliseconds(), Paused: s.Paused, CanarySettings: s.Canary}
}

func fromPersisted(s understudy.ShadowSettings) Settings {
	return Settings{Sampling: s.Sampling, Timeout: time.Duration(s.TimeoutMS) * time.Millisecond, Paused: s.Paused, Canary: s.CanarySettings}
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
	canary  canaryState
	// release is Release as a func value, made once: a method value made
	// at each Acquire would be an allocation on every request.
	release func()
}

// NewModel wraps a runner as a model that is not in any registry, with the
// given settings; the runner closes when the last reference is released.
func NewModel(name, version string, sig understudy.Signature, run understudy.Runner, set Settings) *Model {
	m := &Model{ServingModel: understudy.ServingModel{Name: name, Version: version, Signature: sig, Runner: run}}
	m.primary = m.ServingModel
	m.info = understudy.ModelInfo{Name: name, Version: version, Role: understudy.RoleShadow, Signature: &sig}
	m.refs.Store(1)
	m.release = m.Release
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
