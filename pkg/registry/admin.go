package registry

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/understudy-ml/understudy/pkg/understudy"
)

// Promote makes the named model the primary, atomically: requests already
// running finish on the model they started with, and new ones get the new
// primary. version "" means the newest loaded version of that name. The old
// primary stays loaded as a shadow so the comparison continues the other way
// round. A model whose inputs differ from the current primary's is refused
// unless force is set, because clients would start getting 400s.
func (r *Registry) Promote(name, version string, force bool, actor string) (understudy.ModelRef, error) {
	if !ValidName(name) {
		return understudy.ModelRef{}, understudy.Errorf(understudy.EINVALID, "invalid model name %q", name)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.find(name, version)
	if m == nil {
		return understudy.ModelRef{}, r.notLoaded(name, version)
	}
	old := r.primary
	if m == old {
		return m.Ref(), understudy.Errorf(understudy.ECONFLICT, "%s@%s is already the primary", m.Name, m.Version)
	}
	if old != nil && !force {
		if err := Promotable(old.Signature, m.Signature); err != nil {
			return understudy.ModelRef{}, understudy.Errorf(understudy.ECONFLICT,
				"%s@%s does not take the current primary's inputs, so clients would get errors: %v; add ?force=true to promote anyway", m.Name, m.Version, err)
		}
	}
	if old != nil {
		r.previous = append(r.previous, old)
	}
	r.endCanary(m.Name)
	return r.swap(m, understudy.EventPromoted, "first primary", actor), nil
}

// Promotable reports whether a model can take over every request the
// current primary takes: what Compatible asks of a shadow, and also every
// input the clients send now, since /predict refuses inputs a model does
// not have. A shadow may ignore inputs; a primary may not.
func Promotable(primary, next understudy.Signature) error {
	var problems []string
	if err := Compatible(primary, next); err != nil {
		problems = append(problems, err.Error())
	}
	for _, in := range primary.Inputs {
		if _, ok := next.Input(in.Name); !ok {
			problems = append(problems, fmt.Sprintf("input %q, which clients send now, does not exist in it (it has %s)", in.Name, strings.Join(next.InputNames(), ", ")))
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// Rollback restores the previous primary the same way Promote swaps.
func (r *Registry) Rollback(actor string) (understudy.ModelRef, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.previous) == 0 {
		return understudy.ModelRef{}, understudy.Errorf(understudy.ECONFLICT, "there is no previous primary to roll back to")
	}
	m := r.previous[len(r.previous)-1]
	r.previous = r.previous[:len(r.previous)-1]
	return r.swap(m, understudy.EventRolledBack, "restores the previous primary", actor), nil
}

// swap makes m the primary in one snapshot, so that in-flight requests keep
// the model they acquired, and records the change. r.mu must be held.
func (r *Registry) swap(m *Model, kind, detail, actor string) understudy.ModelRef {
	if old := r.primary; old != nil {
		detail = fmt.Sprintf("replaces %s@%s, which stays loaded as a shadow", old.Name, old.Version)
	}
	r.primary = m
	r.publish()
	r.Log.Warn().Str("model", m.Name).Str("version", m.Version).Str("actor", actor).Str("detail", detail).Msg(kind)
	r.event(kind, m.Name, m.Version, actor, detail)
	r.deployed()
	return m.Ref()
}

// Configure changes the shadow settings of every loaded version of name,
// and of versions loaded later.
func (r *Registry) Configure(name string, p understudy.SettingsPatch, actor string) (understudy.ShadowSettings, error) {
	if !ValidName(name) {
		return understudy.ShadowSettings{}, understudy.Errorf(understudy.EINVALID, "invalid model name %q", name)
	}
	if p.Sampling != nil && (*p.Sampling < 0 || *p.Sampling > 1) {
		return understudy.ShadowSettings{}, understudy.Errorf(understudy.EINVALID, "sampling %v: want a share between 0 and 1", *p.Sampling)
	}
	if p.TimeoutMS != nil && (*p.TimeoutMS <= 0 || *p.TimeoutMS > 3_600_000) {
		return understudy.ShadowSettings{}, understudy.Errorf(understudy.EINVALID, "timeout_ms %d: want 1 to 3600000", *p.TimeoutMS)
	}
	if err := checkCanaryPatch(p.CanaryPatch); err != nil {
		return understudy.ShadowSettings{}, err
	}
	if p.Sampling == nil && p.TimeoutMS == nil && p.Paused == nil && p.CanaryPatch.Empty() {
		return understudy.ShadowSettings{}, understudy.Errorf(understudy.EINVALID, `nothing to change; want {"sampling": 0.25, "timeout_ms": 200, "paused": false, "mode": "canary", "weight": 0.05}`)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.find(name, "") == nil {
		return understudy.ShadowSettings{}, r.notLoaded(name, "")
	}
	set, ok := r.settings[name]
	if !ok {
		set = r.Defaults
	}
	if p.Sampling != nil {
		set.Sampling = *p.Sampling
	}
	if p.TimeoutMS != nil {
		set.Timeout = time.Duration(*p.TimeoutMS) * time.Millisecond
	}
	if p.Paused != nil {
		set.Paused = *p.Paused
	}
	if err := r.applyCanary(name, &set, p.CanaryPatch); err != nil {
		return understudy.ShadowSettings{}, err
	}
	r.settings[name] = set
	for _, m := range r.models {
		if m.Name == name {
			m.SetSettings(set)
		}
	}
	detail := fmt.Sprintf("sampling %v, timeout %v, paused %v%s", set.Sampling, set.Timeout, set.Paused, canaryDetail(set.Canary))
	r.Log.Info().Str("model", name).Str("actor", actor).Str("settings", detail).Msg("shadow settings changed")
	r.event(understudy.EventSettings, name, "", actor, detail)
	r.deployed()
	return set.persisted(), nil
}

// notLoaded explains why a name cannot be acted on. r.mu must be held.
func (r *Registry) notLoaded(name, version string) error {
	if fs, ok := r.files[name]; ok && fs.failed != nil {
		return understudy.Errorf(understudy.ECONFLICT, "model %q failed to load: %s", name, fs.failed.Error)
	}
	if version != "" {
		return understudy.Errorf(understudy.ENOTFOUND, "no loaded model %s@%s; see GET /models", name, version)
	}
	return understudy.Errorf(understudy.ENOTFOUND, "no loaded model named %q; see GET /models", name)
}
