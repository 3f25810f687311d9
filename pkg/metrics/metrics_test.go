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
