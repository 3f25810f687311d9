package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Ensure a canary whose verdict fails a check it is told to stop on is
// stopped once the verdict has its minimum of pairs, with the reason in
// /models and an event, and that unknown check names are refused.
func TestCanaryStopsOnItsVerdict(t *testing.T) {
	m := startServerWith(t, demoDir(t), func(m *Main) { m.CanaryCheckEvery = 100 * time.Millisecond },
		append([]string{"--primary", "iris-v1", "--shed-when-busy=false", "--admin-token", adminToken}, fastWatch...)...)
	t.Cleanup(func() { m.Close() })
	if r := admin(t, "PUT", m.URL()+"/models/iris-v2", adminToken, []byte(`{"mode": "canary", "weight": 0.5, "stop_on": ["bogus"]}`)); r.Status != 400 || !strings.Contains(string(r.Body), "agreement") {
		t.Errorf("stop_on bogus: %d %s, want 400 naming the checks", r.Status, r.Body)
	}
	// iris-v2 disagrees with iris-v1 on a fifth of the held-out rows: the
	// agreement check (Wilson lower bound ≥ 0.8) fails once there are
	// enough pairs.
	mustConfigure(t, m.URL(), "iris-v2", `{"mode": "canary", "weight": 0.5, "stop_on": ["agreement"]}`)
	x := holdout(t).Holdout.X32()
	for i := range 120 {
		if _, status, body := keyed(t, m.URL(), fmt.Sprintf("user-%d", i), rowBody("", x[i%len(x)])); status != 200 {
			t.Fatalf("request %d: %d %s", i, status, body)
		}
	}
	var c *canaryView
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if c = canaryOf(t, m.URL(), "iris-v2"); c != nil && c.Stopped != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("canary not stopped on its failing agreement check: %+v", c)
		}
	}
	if c.Weight != 0 || !strings.Contains(c.Stopped, "agreement check failed") {
		t.Errorf("canary after the stop: %+v, want weight 0 and the agreement check as the reason", c)
	}
	// Events reach the store off the registry's lock, a moment later.
	var evs struct {
		Events []struct{ Kind, Actor string }
	}
	found := false
	for deadline := time.Now().Add(5 * time.Second); !found && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		r := testRequest(t, "GET", m.URL()+"/events?model=iris-v2", nil)
		if err := json.Unmarshal(r.Body, &evs); err != nil {
			t.Fatal(err)
		}
		for _, ev := range evs.Events {
			found = found || ev.Kind == "canary_stopped" && ev.Actor == "verdict"
		}
	}
	if !found {
		t.Errorf("no canary_stopped event by the verdict: %+v", evs.Events)
	}
}

// Ensure a progressive rollout moves through its steps once each has its
// new pairs with the verdict ready, and ends in the atomic promote.
func TestCanaryRolloutSteps(t *testing.T) {
	dir := demoDir(t)
	copyModel(t, filepath.Join(dir, "iris-v1.onnx"), filepath.Join(dir, "iris-v1b.onnx"))
	m := startServerWith(t, dir, func(m *Main) { m.CanaryCheckEvery = 50 * time.Millisecond },
		append([]string{"--primary", "iris-v1", "--shed-when-busy=false", "--admin-token", adminToken}, fastWatch...)...)
	t.Cleanup(func() { m.Close() })
	if r := admin(t, "PUT", m.URL()+"/models/iris-v1b", adminToken, []byte(`{"mode": "canary", "steps": [0.25, 0.5, 1]}`)); r.Status != 400 {
		t.Errorf("steps without step_after_pairs: %d %s, want 400", r.Status, r.Body)
	}
	if r := admin(t, "PUT", m.URL()+"/models/iris-v1b", adminToken, []byte(`{"mode": "canary", "steps": [0.5, 0.25], "step_after_pairs": 5}`)); r.Status != 400 {
		t.Errorf("falling steps: %d %s, want 400", r.Status, r.Body)
	}
	mustConfigure(t, m.URL(), "iris-v1b", `{"mode": "canary", "steps": [0.25, 0.5, 1], "step_after_pairs": 40}`)
	if c := canaryOf(t, m.URL(), "iris-v1b"); c == nil || c.Weight != 0.25 {
		t.Fatalf("canary after setting steps: %+v, want weight 0.25, the first step", c)
	}
	x := holdout(t).Holdout.X32()
	weights := map[float64]bool{}
	for i := 0; ; i++ {
		if _, status, body := keyed(t, m.URL(), fmt.Sprintf("user-%d", i), rowBody("", x[i%len(x)])); status != 200 {
			t.Fatalf("request %d during the rollout: %d %s", i, status, body)
		}
		if c := canaryOf(t, m.URL(), "iris-v1b"); c != nil {
			weights[c.Weight] = true
		}
		if find(listModels(t, m.URL()), "iris-v1b", "primary") != nil {
			t.Logf("promoted after %d requests, through weights %v", i+1, weights)
			break
		}
		if i > 3000 {
			t.Fatalf("not promoted after 3000 requests; weights seen %v", weights)
		}
	}
	if !weights[0.5] || !weights[1] {
		t.Errorf("weights seen during the rollout %v, want each step", weights)
	}
}
