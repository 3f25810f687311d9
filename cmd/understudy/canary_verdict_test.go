package main

import (
	"encoding/json"
	"fmt"
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
	r := testRequest(t, "GET", m.URL()+"/events?model=iris-v2", nil)
	var evs struct {
		Events []struct{ Kind, Actor string }
	}
	if err := json.Unmarshal(r.Body, &evs); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, ev := range evs.Events {
		found = found || ev.Kind == "canary_stopped" && ev.Actor == "verdict"
	}
	if !found {
		t.Errorf("no canary_stopped event by the verdict: %+v", evs.Events)
	}
}
