package metrics

import (
	"testing"
	"time"
)

// runSeries counts the understudy_model_runs_total series of each model
// version, from what a scrape would read.
func runSeries(t *testing.T, m *Metrics) map[string]int {
	t.Helper()
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, f := range families {
		if f.GetName() != "understudy_model_runs_total" {
			continue
		}
		for _, s := range f.Metric {
			key := ""
			for _, l := range s.Label {
				if l.GetName() == "model" || l.GetName() == "version" {
					key += l.GetValue() + "@"
				}
			}
			out[key]++
		}
	}
	return out
}

// Ensure the series of an unloaded model do not come back for good when a
// run of it ends after the unload, and that a version loaded in another
// role keeps the series of the role it had.
func TestUnloadedSeriesStayGone(t *testing.T) {
	m := New()
	loaded := []Model{{"a", "v1", "shadow"}, {"b", "v2", "primary"}}
	m.TrackModels(func() []Model { return loaded })
	if got := runSeries(t, m); got["a@v1@"] != 3 || got["b@v2@"] != 2 {
		t.Fatalf("series at load %v, want a's 3 (ok, error, timeout) and b's 2", got)
	}
	loaded = []Model{{"b", "v2", "primary"}}
	m.Sync()
	m.ShadowRun("a", "v1", "ok", time.Millisecond) // a run that outlived the unload
	m.Sync()
	if got := runSeries(t, m); got["a@v1@"] != 0 {
		t.Errorf("a's series after its unload and a late run: %v, want none", got)
	}
	// b promoted away and loaded as a shadow: its primary series stay.
	loaded = []Model{{"b", "v2", "shadow"}}
	m.Sync()
	if got := runSeries(t, m); got["b@v2@"] != 5 {
		t.Errorf("b's series as primary then shadow: %v, want 5 (2 + 3)", got)
	}
}

// runCount reads understudy_model_runs_total for one series as a scrape
// would; -1 if the series does not exist.
func runCount(t *testing.T, m *Metrics, model, version, role, status string) float64 {
	t.Helper()
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "understudy_model_runs_total" {
			continue
		}
	series:
		for _, s := range f.Metric {
			want := map[string]string{"model": model, "version": version, "role": role, "status": status}
			for _, l := range s.Label {
				if want[l.GetName()] != l.GetValue() {
					continue series
				}
			}
			return s.GetCounter().GetValue()
		}
	}
	return -1
}

// Ensure runs are counted in the series a scrape reads, also for a version
// unloaded (its series deleted) and loaded again: the series cached for
// the hot path must not outlive the deletion.
func TestRunsCountedAcrossReload(t *testing.T) {
	m := New()
	loaded := []Model{{"a", "v1", "primary"}}
	m.TrackModels(func() []Model { return loaded })
	for range 3 {
		m.Run("a", "v1", "primary", "ok", time.Millisecond)
	}
	m.Run("a", "v1", "primary", "error", time.Millisecond)
	if got := runCount(t, m, "a", "v1", "primary", "ok"); got != 3 {
		t.Errorf("ok runs = %v, want 3", got)
	}
	if got := runCount(t, m, "a", "v1", "primary", "error"); got != 1 {
		t.Errorf("error runs = %v, want 1", got)
	}
	loaded = nil
	m.Sync()
	if got := runCount(t, m, "a", "v1", "primary", "ok"); got != -1 {
		t.Fatalf("ok runs after unload = %v, want no series", got)
	}
	loaded = []Model{{"a", "v1", "primary"}}
	m.Sync()
	for range 2 {
		m.Run("a", "v1", "primary", "ok", time.Millisecond)
	}
	if got := runCount(t, m, "a", "v1", "primary", "ok"); got != 2 {
		t.Errorf("ok runs after the reload = %v, want 2", got)
	}
}
