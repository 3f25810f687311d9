package registry

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/understudy-ml/understudy/pkg/understudy"
)

// This file is how models enter and leave serving once loaded: publish
// recomputes every role against the primary (see Compatible) and swaps in the
// snapshot the request path reads without a lock; retire and retireStale
// unload versions; Close retires them all. Each change is reported through
// the OnEvent and OnDeploy hooks.

// snapshot is the immutable serving state; request handlers load it without
// taking a lock.
type snapshot struct {
	primary *Model
	shadows []*Model
}

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
