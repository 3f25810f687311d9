package registry

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/understudy-ml/understudy/pkg/understudy"
)

// Watch follows the models directory until ctx is done: new and changed
// files are loaded in the background once they have settled, and files
// that stay removed for the settle interval are unloaded (or, for the
// primary, kept serving from memory).
// fsnotify events trigger a scan at once; a periodic scan catches what
// events miss.
func (r *Registry) Watch(ctx context.Context) {
	w, err := fsnotify.NewWatcher()
	if err == nil {
		err = w.Add(r.Dir)
	}
	var events <-chan fsnotify.Event
	var errs <-chan error
	if err != nil {
		r.Log.Warn().Err(err).Str("dir", r.Dir).Dur("rescan", r.Rescan).Msg("cannot watch the models directory; relying on periodic rescans")
	} else {
		defer w.Close()
		events, errs = w.Events, w.Errors
	}
	rescan := time.NewTicker(r.Rescan)
	defer rescan.Stop()
	// While a file is settling, scan often enough to notice when it is done.
	settle := time.NewTicker(max(r.Settle/4, 10*time.Millisecond))
	defer settle.Stop()
	r.Scan()
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-events:
			if _, ok := ModelName(ev.Name); ok {
				r.Scan()
			}
		case err := <-errs:
			r.Log.Warn().Err(err).Msg("file watch error; the periodic rescan continues")
		case <-rescan.C:
			r.Scan()
		case <-settle.C:
			if r.settling() {
				r.Scan()
			}
		}
	}
}

func (r *Registry) settling() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, fs := range r.files {
		if (fs.pending && !fs.loading) || !fs.gone.IsZero() {
			return true
		}
	}
	return false
}

// Scan compares the directory with what is loaded and acts on differences.
func (r *Registry) Scan() {
	entries, err := os.ReadDir(r.Dir)
	if err != nil {
		r.Log.Error().Err(err).Str("dir", r.Dir).Msg("cannot read the models directory; models in memory keep serving")
		return
	}
	now := r.Now()
	seen := map[string]bool{}
	var toLoad []string
	r.mu.Lock()
	defer func() {
		r.mu.Unlock()
		for _, name := range toLoad {
			r.mu.Lock()
			fs := r.files[name]
			r.mu.Unlock()
			r.loads.Add(1)
			go func() {
				defer r.loads.Done()
				r.loadFile(name, fs, "watcher")
			}()
		}
	}()
	if r.closed {
		return
	}
	for _, e := range entries {
		name, ok := ModelName(e.Name())
		if !ok {
			continue
		}
		// Stat follows symlinks; the name itself never leaves the directory.
		st, err := os.Stat(filepath.Join(r.Dir, e.Name()))
		if err != nil || !st.Mode().IsRegular() {
			continue
		}
		seen[name] = true
		fs, ok := r.files[name]
		if !ok {
			fs = &fileState{size: st.Size(), mtime: st.ModTime(), stable: now, pending: true}
			r.files[name] = fs
			r.Log.Info().Str("model", name).Msg("new model file; loading once it has settled")
			r.fileBack(name)
		}
		fs.gone = time.Time{}
		if fs.size != st.Size() || !fs.mtime.Equal(st.ModTime()) {
			fs.size, fs.mtime, fs.stable, fs.pending = st.Size(), st.ModTime(), now, true
		}
		if fs.pending && !fs.loading && now.Sub(fs.stable) >= r.Settle {
			fs.pending, fs.loading = false, true
			toLoad = append(toLoad, name)
		}
	}
	for name, fs := range r.files {
		if seen[name] || fs.loading {
			continue
		}
		if fs.gone.IsZero() {
			fs.gone = now
		}
		if now.Sub(fs.gone) < r.Settle {
			continue
		}
		delete(r.files, name)
		r.removed(name)
	}
}

// fileRemovedWarning is added to a primary whose file disappeared.
const fileRemovedWarning = "the model file was removed; the primary keeps serving from memory until another model is promoted"

// fileBack drops the removed-file warning from models of a name whose file
// is back. r.mu must be held.
func (r *Registry) fileBack(name string) {
	for _, m := range r.models {
		if m.Name == name {
			m.info.Warnings = slices.DeleteFunc(m.info.Warnings, func(w string) bool { return w == fileRemovedWarning })
		}
	}
}

// removed handles a model file that disappeared. r.mu must be held.
func (r *Registry) removed(name string) {
	changed := false
	for _, m := range append([]*Model(nil), r.models...) {
		if m.Name != name {
			continue
		}
		if m == r.primary {
			if !slices.Contains(m.info.Warnings, fileRemovedWarning) {
				m.info.Warnings = append(m.info.Warnings, fileRemovedWarning)
			}
			r.Log.Warn().Str("model", name).Str("version", m.Version).Msg(fileRemovedWarning)
			r.event(understudy.EventFileRemoved, name, m.Version, "watcher", fileRemovedWarning)
			continue
		}
		r.event(understudy.EventFileRemoved, name, m.Version, "watcher", "the model file was removed")
		r.retire(m, "watcher", "its file was removed")
		changed = true
	}
	if changed {
		r.publish()
	}
}
