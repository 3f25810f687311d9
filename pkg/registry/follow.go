package registry

import (
	"fmt"
	"reflect"

	"github.com/understudy-ml/understudy/pkg/understudy"
)

// This file makes a registry follow a deployment that several replicas
// share through one store: a promote, rollback or settings change on any
// replica reaches this one through Follow. A replica never overwrites the
// shared deployment on its own (at start, or when its files differ); only
// admin actions do.

// Follow applies a deployment decided elsewhere: its shadow settings, and
// its primary if this registry has that version loaded (same name and
// version, and the same sha256 when the deployment names one). If it has
// not, the current primary keeps serving and Sync says why, until the file
// arrives. Nothing is saved back: the deployment is already the shared one.
func (r *Registry) Follow(d understudy.Deployment, actor string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	for name, s := range d.Settings {
		set := fromPersisted(s)
		if old, ok := r.settings[name]; ok && reflect.DeepEqual(old, set) {
			continue
		}
		r.settings[name] = set
		for _, m := range r.models {
			if m.Name == name {
				m.SetSettings(set)
			}
		}
	}
	if d.Primary.Name == "" {
		return
	}
	want := d
	r.wanted = &want
	r.follow(actor)
}

// follow switches to the wanted primary once it is loaded. r.mu must be
// held.
func (r *Registry) follow(actor string) {
	d := r.wanted
	if d == nil {
		return
	}
	if r.primary != nil && matches(r.primary, d.Primary, d.PrimarySHA256) {
		r.syncWarning = ""
		r.followPrevious(d.Previous)
		return
	}
	m := r.findRef(d.Primary, d.PrimarySHA256)
	if m == nil {
		serving := "no primary"
		if r.primary != nil {
			serving = r.primary.Name + "@" + r.primary.Version
		}
		warning := fmt.Sprintf("the shared deployment's primary %s@%s is not loaded on this replica (its models directory lacks a file with that content); still serving %s",
			d.Primary.Name, d.Primary.Version, serving)
		if warning != r.syncWarning {
			r.Log.Error().Str("model", d.Primary.Name).Str("version", d.Primary.Version).Str("serving", serving).Msg("cannot follow the shared deployment: model file missing")
			r.event(understudy.EventFallback, d.Primary.Name, d.Primary.Version, actor, warning)
		}
		r.syncWarning = warning
		return
	}
	r.syncWarning = ""
	old := r.primary
	r.primary = m
	r.followPrevious(d.Previous)
	r.publish()
	detail := "follows the shared deployment"
	if old != nil {
		detail = fmt.Sprintf("follows the shared deployment; replaces %s@%s, which stays loaded as a shadow", old.Name, old.Version)
	}
	r.Log.Warn().Str("model", m.Name).Str("version", m.Version).Str("actor", actor).Msg(detail)
	r.event(understudy.EventPromoted, m.Name, m.Version, actor, detail)
}

// followPrevious takes the shared rollback stack, as far as its versions
// are loaded here. r.mu must be held.
func (r *Registry) followPrevious(refs []understudy.ModelRef) {
	var prev []*Model
	for _, ref := range refs {
		if m := r.findRef(ref, ""); m != nil && m != r.primary {
			prev = append(prev, m)
		}
	}
	r.previous = prev
}

// findRef finds the loaded version a reference names, with that whole
// sha256 if one is given. r.mu must be held.
func (r *Registry) findRef(ref understudy.ModelRef, sha string) *Model {
	for _, m := range r.models {
		if matches(m, ref, sha) {
			return m
		}
	}
	return nil
}

func matches(m *Model, ref understudy.ModelRef, sha string) bool {
	return m.Name == ref.Name && m.Version == ref.Version && (sha == "" || m.info.SHA256 == sha)
}

// SyncWarning says why this replica does not serve the shared deployment's
// primary, or "" when it does (or follows none).
func (r *Registry) SyncWarning() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.syncWarning
}
