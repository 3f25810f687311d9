package main

import (
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/understudy-ml/understudy/pkg/onnxbuild"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// This file proves canary mode end to end with real models, ONNX Runtime,
// SQLite and HTTP: the share of keys, stickiness, the guard's fallback and
// stop, pairs with who answered, persistence, and promote and rollback
// under load with a canary on.

// Ensure a canary at weight 0.2 answers 20% of 1,000 keys (±0.04), the
// same keys every time, that raising the weight only adds keys, that the
// pairs of its requests are stored primary-vs-candidate with who answered,
// that feedback joins by request id, and that the settings survive a
// restart.
func TestCanaryShareStickinessPairs(t *testing.T) {
	d := holdout(t)
	dir := demoDir(t)
	// A third model, a plain shadow, is mirrored for canary requests too.
	writeModel(t, dir, "mlp", onnxbuild.RandomMLP(9, 4, []int{8}, 3).Model("mlp"), time.Time{})
	dbPath := filepath.Join(t.TempDir(), "canary.db")
	// Every request must have its pairs: no shedding, a queue that never
	// fills, and time to drain it at shutdown.
	args := append([]string{"--primary", "iris-v1", "--db", dbPath, "--shed-when-busy=false", "--shadow-queue", "100000", "--drain-timeout", "60s"}, fastWatch...)
	m := startServerWith(t, dir, nil, args...)
	mustConfigure(t, m.URL(), "iris-v2", `{"mode": "canary", "weight": 0.2}`)
	rows := d.Holdout.X32()
	_, v2 := d.V2.Predict(rows)
	_ = v2
	const keys = 1000
	first := map[string]string{}
	answered := 0
	for i := range keys {
		key := fmt.Sprintf("user-%d", i)
		model, status, body := keyed(t, m.URL(), key, rowBody(fmt.Sprintf("k-%d", i), rows[i%len(rows)]))
		if status != 200 {
			t.Fatalf("%s: %d %s", key, status, body)
		}
		name := strings.SplitN(model, "@", 2)[0]
		var v struct{ Model struct{ Name string } }
		json.Unmarshal(body, &v)
		if v.Model.Name != name {
			t.Fatalf("%s: body says %q, header %q", key, v.Model.Name, model)
		}
		if want := understudy.KeyFraction(key) < 0.2; want != (name == "iris-v2") {
			t.Fatalf("%s: answered by %s; want the canary %v", key, model, want)
		}
		if name == "iris-v2" {
			answered++
		}
		first[key] = name
	}
	share := float64(answered) / keys
	t.Logf("weight 0.2: the canary answered %d of %d keys (%.3f)", answered, keys, share)
	if share < 0.16 || share > 0.24 {
		t.Errorf("share %.3f, want 0.2 ± 0.04", share)
	}
	total, byCanary := int64(keys), int64(answered)
	// Stickiness: the same keys again get the same model.
	for i := range 200 {
		key := fmt.Sprintf("user-%d", i)
		model, _, _ := keyed(t, m.URL(), key, rowBody("", rows[0]))
		got := strings.SplitN(model, "@", 2)[0]
		if got != first[key] {
			t.Fatalf("%s: %s, then %s", key, first[key], got)
		}
		total++
		if got == "iris-v2" {
			byCanary++
		}
	}
	cv := canaryOf(t, m.URL(), "iris-v2")
	if cv == nil || cv.Mode != "canary" || cv.Weight != 0.2 || cv.Answered < int64(answered) || cv.Fallbacks != 0 {
		t.Errorf("GET /models canary: %+v", cv)
	}
	// Feedback joins a request the canary answered.
	var canaryID string
	for i := range keys {
		if first[fmt.Sprintf("user-%d", i)] == "iris-v2" {
			canaryID = fmt.Sprintf("k-%d", i)
			break
		}
	}
	if r := testRequest(t, "POST", m.URL()+"/feedback", []byte(`{"id": "`+canaryID+`", "label": 1}`)); r.Status != 200 {
		t.Errorf("feedback on a canary request: %d %s", r.Status, r.Body)
	}
	// Raising the weight only adds keys.
	mustConfigure(t, m.URL(), "iris-v2", `{"weight": 0.5}`)
	more := 0
	for i := range keys {
		key := fmt.Sprintf("user-%d", i)
		model, _, _ := keyed(t, m.URL(), key, rowBody("", rows[0]))
		got := strings.SplitN(model, "@", 2)[0]
		if first[key] == "iris-v2" && got != "iris-v2" {
			t.Fatalf("%s moved back to %s when the weight rose", key, got)
		}
		if got == "iris-v2" {
			more++
			byCanary++
		}
		total++
	}
	if more <= answered {
		t.Errorf("weight 0.5: %d keys on the canary, not more than %d", more, answered)
	}
	// The report's figures equal the counts made here.
	rc := reportCanary(t, m.URL(), "iris-v2", byCanary, 0, total)
	if rc.Mode != "canary" || rc.Weight != 0.5 || math.Abs(rc.AnsweredShare-float64(byCanary)/float64(total)) > 1e-9 || rc.Stops != 0 {
		t.Errorf("report canary: %+v; want answered share %d/%d", rc, byCanary, total)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}

	// Stored: predictions say who answered; each canary request has one
	// pair, iris-v2 against iris-v1, served_by candidate.
	preds := servedBy(t, dbPath, `SELECT model || ' ' || served_by, count(*) FROM predictions WHERE request_id LIKE 'k-%' GROUP BY 1`)
	if preds["iris-v2 candidate"] != answered || preds["iris-v1 primary"] != keys-answered {
		t.Errorf("stored predictions by model and served_by: %v, want %d candidate, %d primary", preds, answered, keys-answered)
	}
	pairs := servedBy(t, dbPath, `SELECT shadow || ' vs ' || primary_model || ' ' || served_by || ' ' || status, count(*) FROM shadow_results WHERE request_id LIKE 'k-%' GROUP BY 1`)
	if pairs["iris-v2 vs iris-v1 candidate ok"] != answered || pairs["iris-v2 vs iris-v1 primary ok"] != keys-answered {
		t.Errorf("stored pairs: %v", pairs)
	}
	// The other shadow is compared with the primary's answer on every
	// request, including those the canary answered.
	if pairs["mlp vs iris-v1 candidate ok"] != answered || pairs["mlp vs iris-v1 primary ok"] != keys-answered {
		t.Errorf("stored pairs of the other shadow: %v", pairs)
	}
	// Latency is the candidate's on-path run, PrimaryLatency the primary's
	// off-path one.
	timed := servedBy(t, dbPath, `SELECT served_by, count(*) FROM shadow_results WHERE request_id LIKE 'k-%' AND shadow = 'iris-v2' AND served_by = 'candidate' AND latency_us > 0 AND primary_latency_us > 0 GROUP BY 1`)
	if timed["candidate"] != answered {
		t.Errorf("canary pairs with both latencies: %v, want %d", timed, answered)
	}
	db := openStore(t, dbPath)
	res, err := db.ShadowResults(t.Context(), canaryID)
	if err != nil || len(res) != 2 {
		t.Fatalf("pairs of canary request %s: %v %v; want the canary's and mlp's", canaryID, res, err)
	}
	for _, r := range res {
		if r.Primary != "iris-v1" || r.Status != "ok" || r.Compare.Agreement == nil {
			t.Errorf("pair of canary request %s: %+v", canaryID, r)
		}
	}
	p, err := db.Prediction(t.Context(), canaryID)
	if err != nil || p.Label == nil || p.Model != "iris-v2" {
		t.Errorf("prediction of canary request %s: %+v %v", canaryID, p, err)
	}
	db.Close()

	// The settings survive a restart, and keys keep their model.
	m = startServerWith(t, dir, nil, args...)
	defer m.Close()
	if cv := canaryOf(t, m.URL(), "iris-v2"); cv == nil || cv.Mode != "canary" || cv.Weight != 0.5 {
		t.Errorf("after restart: %+v", cv)
	}
	for i := range 100 {
		key := fmt.Sprintf("user-%d", i)
		model, _, _ := keyed(t, m.URL(), key, rowBody("", rows[0]))
		if first[key] == "iris-v2" && !strings.HasPrefix(model, "iris-v2@") {
			t.Fatalf("%s: %s after restart", key, model)
		}
	}
}

// Ensure a candidate that fails for some inputs never shows a client an
// error: the primary answers at once, each fallback is counted and stored
// as the candidate's failed pair, and the guard stops the canary (weight
// 0, event canary_stopped, shown in /models), which holds across a
// restart until an admin sets a weight again.
func TestCanaryGuardFallsBackAndStops(t *testing.T) {
	dir := demoDir(t)
	writeModel(t, dir, "flaky", flakyModel(), time.Time{})
	dbPath := filepath.Join(t.TempDir(), "guard.db")
	args := append([]string{"--primary", "iris-v1", "--db", dbPath, "--shed-when-busy=false"}, fastWatch...)
	m := startServerWith(t, dir, nil, args...)
	mustConfigure(t, m.URL(), "flaky", `{"mode": "canary", "weight": 1, "window": 20, "max_error_rate": 0.2}`)
	byModel := map[string]int{}
	for i := range 10 {
		model, status, body := keyed(t, m.URL(), "", rowsBody(3))
		if status != 200 {
			t.Fatalf("3 rows, request %d: %d %s", i, status, body)
		}
		byModel[strings.SplitN(model, "@", 2)[0]]++
	}
	if byModel["flaky"] != 10 {
		t.Fatalf("3-row requests answered by %v; want the canary for all", byModel)
	}
	// One-row requests fail on the candidate: 4 failures of 20 are within
	// 0.2, the 5th trips the guard.
	for i := range 30 {
		model, status, body := keyed(t, m.URL(), "", rowsBody(1))
		if status != 200 || !strings.HasPrefix(model, "iris-v1@") {
			t.Fatalf("1 row, request %d: %d %s from %s; want the primary's answer", i, status, body, model)
		}
	}
	var cv *canaryView
	deadline := time.Now().Add(10 * time.Second)
	for cv = canaryOf(t, m.URL(), "flaky"); cv == nil || cv.Stopped == ""; cv = canaryOf(t, m.URL(), "flaky") {
		if time.Now().After(deadline) {
			t.Fatalf("the guard did not stop the canary: %+v", cv)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("guard: %+v", cv)
	if cv.Weight != 0 || cv.Fallbacks < 5 || cv.Fallbacks > 6 || cv.Answered != 10 {
		t.Errorf("after the stop: %+v; want weight 0, 5 fallbacks (6 if one raced the stop), 10 answered", cv)
	}
	stopped := 0
	for _, ev := range events(t, m.URL(), "flaky") {
		if ev.Kind == "canary_stopped" {
			stopped++
		}
	}
	if stopped != 1 {
		t.Errorf("%d canary_stopped events, want 1", stopped)
	}
	// After the stop the primary answers without trying the candidate.
	if model, status, _ := keyed(t, m.URL(), "", rowsBody(3)); status != 200 || !strings.HasPrefix(model, "iris-v1@") {
		t.Errorf("after the stop: %d from %s", status, model)
	}
	// The report and the metrics agree with the counts.
	rc := reportCanary(t, m.URL(), "flaky", 10, cv.Fallbacks, 41)
	if rc.Stops != 1 || rc.Weight != 0 || rc.Stopped == "" || math.Abs(rc.AnsweredShare-10.0/41) > 1e-9 {
		t.Errorf("report canary: %+v", rc)
	}
	page := string(testRequest(t, "GET", m.URL()+"/report?window=1h", nil).Body)
	for _, want := range []string{`aria-label="Canary"`, "Fallbacks", `class="canary-weight" data-model="flaky"`, "Stop the canary"} {
		if !strings.Contains(page, want) {
			t.Errorf("the report page lacks %s", want)
		}
	}
	metrics := string(testRequest(t, "GET", m.URL()+"/metrics", nil).Body)
	for _, want := range []string{
		`understudy_canary_answered_total{model="flaky",version="` + strings.SplitN(findVersion(t, m.URL(), "flaky"), "@", 2)[0] + `"} 10`,
		fmt.Sprintf(`understudy_canary_fallbacks_total{model="flaky",version="%s"} %d`, findVersion(t, m.URL(), "flaky"), cv.Fallbacks),
		`understudy_canary_stops_total{model="flaky",version="` + findVersion(t, m.URL(), "flaky") + `"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	fallbacks := servedBy(t, dbPath, `SELECT served_by || ' ' || status, count(*) FROM shadow_results WHERE shadow = 'flaky' GROUP BY 1`)
	if int64(fallbacks["fallback error"]) != cv.Fallbacks || fallbacks["candidate ok"] != 10 {
		t.Errorf("stored flaky pairs: %v; want %d fallback errors and 10 candidate ok", fallbacks, cv.Fallbacks)
	}
	preds := servedBy(t, dbPath, `SELECT model || ' ' || served_by || ' ' || status, count(*) FROM predictions GROUP BY 1`)
	if int64(preds["iris-v1 fallback ok"]) != cv.Fallbacks {
		t.Errorf("stored predictions: %v; want %d fallbacks answered ok by iris-v1", preds, cv.Fallbacks)
	}

	// The stop holds across a restart...
	m = startServerWith(t, dir, nil, args...)
	defer m.Close()
	if cv := canaryOf(t, m.URL(), "flaky"); cv == nil || cv.Weight != 0 || cv.Stopped == "" {
		t.Errorf("after restart: %+v, want stopped at weight 0", cv)
	}
	if model, _, _ := keyed(t, m.URL(), "", rowsBody(3)); !strings.HasPrefix(model, "iris-v1@") {
		t.Errorf("after restart, answered by %s", model)
	}
	// ...until an admin sets a weight again.
	mustConfigure(t, m.URL(), "flaky", `{"weight": 1}`)
	if cv := canaryOf(t, m.URL(), "flaky"); cv == nil || cv.Weight != 1 || cv.Stopped != "" {
		t.Errorf("after setting a weight: %+v", cv)
	}
	if model, _, _ := keyed(t, m.URL(), "", rowsBody(3)); !strings.HasPrefix(model, "flaky@") {
		t.Errorf("after setting a weight, answered by %s", model)
	}
}

// Ensure settings that make no sense are refused, and that at most one
// model is a canary at a time.
func TestCanarySettingsRefused(t *testing.T) {
	dir := demoDir(t)
	writeModel(t, dir, "flaky", flakyModel(), time.Time{})
	m := startServer(t, dir, append([]string{"--primary", "iris-v1"}, fastWatch...)...)
	for _, tt := range []struct{ name, body string }{
		{"iris-v2", `{"mode": "blue"}`},
		{"iris-v2", `{"weight": 1.5}`},
		{"iris-v2", `{"max_error_rate": 0}`},
		{"iris-v2", `{"window": 0}`},
		{"iris-v1", `{"mode": "canary", "weight": 0.1}`},
	} {
		if r := admin(t, "PUT", m.URL()+"/models/"+tt.name, adminToken, []byte(tt.body)); r.Status < 400 {
			t.Errorf("PUT %s %s: %d, want refused", tt.name, tt.body, r.Status)
		}
	}
	mustConfigure(t, m.URL(), "iris-v2", `{"mode": "canary", "weight": 0.1}`)
	if r := admin(t, "PUT", m.URL()+"/models/flaky", adminToken, []byte(`{"mode": "canary", "weight": 0.1}`)); r.Status != 409 {
		t.Errorf("a second canary: %d %s, want 409", r.Status, r.Body)
	}
	mustConfigure(t, m.URL(), "iris-v2", `{"mode": "shadow"}`)
	mustConfigure(t, m.URL(), "flaky", `{"mode": "canary", "weight": 0.1}`)
}

// Ensure promote and rollback while a canary is on fail no request under
// load, and that a promoted canary leaves canary mode.
func TestCanaryPromoteRollbackUnderLoad(t *testing.T) {
	dir := demoDir(t)
	writeModel(t, dir, "mlp", onnxbuild.RandomMLP(9, 4, []int{8}, 3).Model("mlp"), time.Time{})
	m := startServerWith(t, dir, nil, append([]string{"--primary", "iris-v1"}, fastWatch...)...)
	defer m.Close()
	waitFor(t, m.URL(), "mlp shadow", func(ms []modelView) bool { return find(ms, "mlp", "shadow") != nil })
	mustConfigure(t, m.URL(), "iris-v2", `{"mode": "canary", "weight": 0.5}`)
	p := &predictor{url: m.URL(), seen: map[string]string{}, versions: map[string]int{}}
	var stop atomic.Bool
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() { defer wg.Done(); p.run(&stop, g) }()
	}
	step := func(name string, f func()) {
		t.Helper()
		before := p.requests.Load()
		f()
		time.Sleep(200 * time.Millisecond)
		if p.requests.Load() == before {
			t.Fatalf("%s: no requests went through", name)
		}
	}
	mustAdmin := func(method, path string) {
		t.Helper()
		if r := admin(t, method, m.URL()+path, adminToken, nil); r.Status != 200 {
			t.Fatalf("%s %s: %d %s", method, path, r.Status, r.Body)
		}
	}
	step("canary on", func() {})
	step("promote another model", func() { mustAdmin("POST", "/models/mlp/promote") })
	step("rollback", func() { mustAdmin("POST", "/models/rollback") })
	step("promote the canary", func() { mustAdmin("POST", "/models/iris-v2/promote") })
	if cv := canaryOf(t, m.URL(), "iris-v2"); cv != nil {
		t.Errorf("the promoted canary is still one: %+v", cv)
	}
	step("rollback again", func() { mustAdmin("POST", "/models/rollback") })
	stop.Store(true)
	wg.Wait()
	if n := p.failures.Load(); n != 0 {
		t.Errorf("%d of %d requests failed", n, p.requests.Load())
	}
	if len(p.mixed) > 0 {
		t.Errorf("answers not consistent with their model version: %v", p.mixed[:min(3, len(p.mixed))])
	}
	t.Logf("%d requests, answers by version: %v", p.requests.Load(), p.versions)
}
