package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/understudy-ml/understudy/pkg/onnxbuild"
)

var fastWatch = []string{"--settle", "200ms", "--rescan", "100ms", "--admin-token", adminToken}

// waitFor polls /models until cond holds or the deadline passes.
func waitFor(tb testing.TB, url, what string, cond func([]modelView) bool) []modelView {
	tb.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ms := listModels(tb, url)
		if cond(ms) {
			return ms
		}
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s; models: %+v", what, ms)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

type eventView struct {
	Kind    string `json:"kind"`
	Model   string `json:"model"`
	Version string `json:"version"`
	Actor   string `json:"actor"`
	Detail  string `json:"detail"`
}

func events(tb testing.TB, url, model string) []eventView {
	tb.Helper()
	var v struct{ Events []eventView }
	r := testRequest(tb, "GET", url+"/events?limit=1000&model="+model, nil)
	json.Unmarshal(r.Body, &v)
	return v.Events
}

// Ensure a model file copied slowly in chunks is loaded once, complete, and
// never half-read.
func TestSlowCopyLoadedOnce(t *testing.T) {
	dir := demoDir(t)
	m := startServerWith(t, dir, nil, append([]string{"--primary", "iris-v1"}, fastWatch...)...)
	defer m.Close()
	data, err := onnxbuild.RandomMLP(5, 4, []int{256, 256}, 3).Model("big").Marshal()
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(dir, "copied.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	// 16 chunks 60 ms apart: the copy takes about a second, far longer than
	// the 200 ms settle interval, but each pause is shorter.
	chunk := len(data)/16 + 1
	for off := 0; off < len(data); off += chunk {
		f.Write(data[off:min(off+chunk, len(data))])
		f.Sync()
		time.Sleep(60 * time.Millisecond)
	}
	f.Close()
	start := time.Now()
	ms := waitFor(t, m.URL(), "the copied model to be a shadow", func(ms []modelView) bool { return find(ms, "copied", "shadow") != nil })
	t.Logf("shadowing %v after the copy finished (load %.1f ms)", time.Since(start), find(ms, "copied", "").LoadMS)
	if got, want := find(ms, "copied", "").Version, sha12(data); got != want {
		t.Errorf("version %s, want %s (the complete file)", got, want)
	}
	// Events reach the store a moment after the model is serving.
	var loaded, failed int
	for deadline := time.Now().Add(5 * time.Second); loaded == 0 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		loaded, failed = 0, 0
		for _, ev := range events(t, m.URL(), "copied") {
			switch ev.Kind {
			case "loaded":
				loaded++
			case "failed":
				failed++
			}
		}
	}
	if loaded != 1 || failed != 0 {
		t.Errorf("%d loaded and %d failed events, want exactly one load", loaded, failed)
	}
}

// Ensure corrupt, truncated, empty and non-ONNX files end as failed with
// their error while the primary keeps serving, are retried only when they
// change, and ignored files are ignored.
func TestBrokenFilesFail(t *testing.T) {
	dir := demoDir(t)
	m := startServerWith(t, dir, nil, append([]string{"--primary", "iris-v1"}, fastWatch...)...)
	defer m.Close()
	good, _ := os.ReadFile(filepath.Join(dir, "iris-v2.onnx"))
	files := map[string][]byte{
		"truncated.onnx": good[:len(good)/2],
		"garbage.onnx":   []byte("GIF89a not a model at all"),
		"empty.onnx":     nil,
		"README.md":      []byte("ignored"),
		".hidden.onnx":   good,
		"notes.onnx~":    good,
	}
	var stop atomic.Bool
	var failures atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			r, err := http.Post(m.URL()+"/predict", "application/json", strings.NewReader(`{"input": [[5.1, 3.5, 1.4, 0.2]]}`))
			if err != nil || r.StatusCode != 200 {
				failures.Add(1)
			}
			if r != nil {
				r.Body.Close()
			}
		}
	}()
	for name, data := range files {
		os.WriteFile(filepath.Join(dir, name), data, 0o644)
	}
	ms := waitFor(t, m.URL(), "three failed files", func(ms []modelView) bool {
		n := 0
		for _, mv := range ms {
			if mv.Role == "failed" {
				n++
			}
		}
		return n == 3
	})
	for _, name := range []string{"truncated", "garbage", "empty"} {
		if mv := find(ms, name, "failed"); mv == nil || mv.Error == "" {
			t.Errorf("%s: %+v, want failed with an error", name, mv)
		}
	}
	if len(ms) != 5 {
		t.Errorf("got %d entries, want 5 (2 demo models, 3 failed; others ignored): %+v", len(ms), ms)
	}
	time.Sleep(500 * time.Millisecond) // several rescans: no retry of unchanged files
	failedEvents := 0
	for _, ev := range events(t, m.URL(), "garbage") {
		if ev.Kind == "failed" {
			failedEvents++
		}
	}
	// The event store is asynchronous; 500 ms is ample for the one event.
	if failedEvents != 1 {
		t.Errorf("garbage failed %d times, want once (retried only on change)", failedEvents)
	}
	// Fixing the file is a change, so it is retried and becomes a shadow.
	os.WriteFile(filepath.Join(dir, "garbage.onnx"), good, 0o644)
	waitFor(t, m.URL(), "the fixed file to load", func(ms []modelView) bool { return find(ms, "garbage", "shadow") != nil })
	stop.Store(true)
	wg.Wait()
	if n := failures.Load(); n != 0 {
		t.Errorf("%d primary requests failed while broken files came and went", n)
	}
}

// Ensure admin endpoints answer 403 without a configured token (saying how
// to enable them), 401 without or with a wrong token, and work with the
// right one.
func TestAdminAuth(t *testing.T) {
	off := startServerWith(t, demoDir(t), nil, "--primary", "iris-v1")
	defer off.Close()
	r := admin(t, "POST", off.URL()+"/models/iris-v2/promote", "", nil)
	if msg, _ := r.json(t)["error"].(string); r.Status != 403 || !strings.Contains(msg, "--admin-token") {
		t.Errorf("no token configured: %d %q, want 403 naming --admin-token", r.Status, msg)
	}
	on := startServerWith(t, demoDir(t), nil, "--primary", "iris-v1", "--admin-token", adminToken)
	defer on.Close()
	for _, tt := range []struct {
		name, token string
		status      int
	}{{"missing", "", 401}, {"wrong", "guess", 401}, {"prefix", adminToken[:4], 401}, {"right", adminToken, 200}} {
		r := admin(t, "PUT", on.URL()+"/models/iris-v2", tt.token, []byte(`{"sampling": 0.5}`))
		if r.Status != tt.status {
			t.Errorf("%s token: %d %s, want %d", tt.name, r.Status, r.Body, tt.status)
		}
	}
}

// Ensure model names that try to leave the models directory are refused.
func TestModelNameTraversal(t *testing.T) {
	m := startServerWith(t, demoDir(t), nil, "--primary", "iris-v1", "--admin-token", adminToken)
	defer m.Close()
	for _, path := range []string{
		"/models/..%2F..%2Fetc%2Fpasswd/promote",
		"/models/%2e%2e/promote",
		"/models/..%5Cwin/promote",
		"/models/a%00b/promote",
	} {
		r := admin(t, "POST", m.URL()+path, adminToken, nil)
		if r.Status != 400 {
			t.Errorf("%s: %d %s, want 400", path, r.Status, r.Body)
		}
	}
	for _, path := range []string{"/models/../etc/promote", "/models/a/b/promote"} {
		if r := admin(t, "POST", m.URL()+path, adminToken, nil); r.Status != 404 {
			t.Errorf("%s: %d, want 404 (no such route)", path, r.Status)
		}
	}
	if r := admin(t, "PUT", m.URL()+"/models/%2e%2e", adminToken, []byte(`{"paused": true}`)); r.Status != 400 {
		t.Errorf("PUT ..: %d, want 400", r.Status)
	}
}

// Ensure promotion, rollback, shadow settings and the history survive a
// restart, and a primary whose file is gone falls back loudly.
func TestDeploymentSurvivesRestart(t *testing.T) {
	dir := demoDir(t)
	db := filepath.Join(t.TempDir(), "deploy.db")
	args := append([]string{"--primary", "iris-v1", "--db", db}, fastWatch...)
	m := startServerWith(t, dir, nil, args...)
	if r := admin(t, "POST", m.URL()+"/models/iris-v2/promote", adminToken, nil); r.Status != 200 {
		t.Fatalf("promote: %d %s", r.Status, r.Body)
	}
	if r := admin(t, "PUT", m.URL()+"/models/iris-v1", adminToken, []byte(`{"sampling": 0.25, "timeout_ms": 200, "paused": true}`)); r.Status != 200 {
		t.Fatalf("settings: %d %s", r.Status, r.Body)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}

	// --primary iris-v1 is still passed: the persisted state wins.
	m = startServerWith(t, dir, nil, args...)
	ms := listModels(t, m.URL())
	if find(ms, "iris-v2", "primary") == nil {
		t.Errorf("after restart: %+v, want iris-v2 primary", ms)
	}
	if v1 := find(ms, "iris-v1", "shadow"); v1 == nil || v1.Sampling == nil || *v1.Sampling != 0.25 || v1.Timeout != 200 || !v1.Paused {
		t.Errorf("iris-v1 settings after restart: %+v", v1)
	}
	kinds := map[string]int{}
	for _, ev := range events(t, m.URL(), "") {
		kinds[ev.Kind]++
	}
	if kinds["promoted"] != 1 || kinds["settings"] != 1 || kinds["loaded"] < 4 {
		t.Errorf("history after restart: %v", kinds)
	}
	// Rolling back after the restart restores iris-v1.
	if r := admin(t, "POST", m.URL()+"/models/rollback", adminToken, nil); r.Status != 200 || !strings.Contains(string(r.Body), `"iris-v1"`) {
		t.Errorf("rollback after restart: %d %s", r.Status, r.Body)
	}
	if r := admin(t, "POST", m.URL()+"/models/iris-v2/promote", adminToken, nil); r.Status != 200 {
		t.Fatalf("promote again: %d %s", r.Status, r.Body)
	}
	m.Close()

	// The persisted primary's file is gone: fall back to --primary, say so.
	os.Remove(filepath.Join(dir, "iris-v2.onnx"))
	m = startServerWith(t, dir, nil, args...)
	defer m.Close()
	if find(listModels(t, m.URL()), "iris-v1", "primary") == nil {
		t.Errorf("after losing iris-v2: want iris-v1 primary")
	}
	fallback := false
	for _, ev := range events(t, m.URL(), "iris-v2") {
		fallback = fallback || ev.Kind == "primary_fallback"
	}
	if !fallback {
		t.Error("no primary_fallback event after the persisted primary's file disappeared")
	}
}

// predictor is a steady load that checks every answer is consistent with
// the one model version it names.
type predictor struct {
	url      string
	failures atomic.Int64
	requests atomic.Int64
	mu       sync.Mutex
	seen     map[string]string // version+input -> outputs
	versions map[string]int
	mixed    []string
}

func (p *predictor) run(stop *atomic.Bool, g int) {
	inputs := []string{`[[5.1, 3.5, 1.4, 0.2]]`, `[[6.0, 2.7, 5.1, 1.6]]`, `[[6.3, 2.8, 5.1, 1.5]]`, `[[5.8, 2.7, 4.1, 1.0]]`}
	client := &http.Client{Timeout: 10 * time.Second}
	for i := 0; !stop.Load(); i++ {
		in := inputs[(i+g)%len(inputs)]
		resp, err := client.Post(p.url+"/predict", "application/json", strings.NewReader(`{"input": `+in+`}`))
		p.requests.Add(1)
		if err != nil {
			p.failures.Add(1)
			continue
		}
		var v struct {
			Model   struct{ Name, Version string }
			Outputs json.RawMessage
		}
		json.NewDecoder(resp.Body).Decode(&v)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			p.failures.Add(1)
			continue
		}
		key := v.Model.Name + "@" + v.Model.Version + " " + in
		p.mu.Lock()
		p.versions[v.Model.Name+"@"+v.Model.Version]++
		if prev, ok := p.seen[key]; ok && prev != string(v.Outputs) {
			p.mixed = append(p.mixed, fmt.Sprintf("%s: %s then %s", key, prev, v.Outputs))
		}
		p.seen[key] = string(v.Outputs)
		p.mu.Unlock()
	}
}

// Ensure that under a steady load from several goroutines there are no
// failed requests and every answer is consistent with one model version
// while models are promoted, rolled back, dropped in, replaced and deleted,
// including the primary's own file.
func TestLifecycleUnderLoad(t *testing.T) {
	dir := demoDir(t)
	m := startServerWith(t, dir, nil, append([]string{"--primary", "iris-v1"}, fastWatch...)...)
	defer m.Close()
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
		time.Sleep(150 * time.Millisecond)
		if p.requests.Load() == before {
			t.Fatalf("%s: no requests went through", name)
		}
	}
	mustAdmin := func(method, path string, body []byte) {
		t.Helper()
		if r := admin(t, method, m.URL()+path, adminToken, body); r.Status != 200 {
			t.Fatalf("%s %s: %d %s", method, path, r.Status, r.Body)
		}
	}
	step("promote", func() { mustAdmin("POST", "/models/iris-v2/promote", nil) })
	step("rollback", func() { mustAdmin("POST", "/models/rollback", nil) })
	step("drop in", func() {
		writeModel(t, dir, "mlp", onnxbuild.RandomMLP(9, 4, []int{8}, 3).Model("mlp"), time.Time{})
		waitFor(t, m.URL(), "mlp shadow", func(ms []modelView) bool { return find(ms, "mlp", "shadow") != nil })
	})
	step("replace a file", func() {
		writeModel(t, dir, "mlp", onnxbuild.RandomMLP(10, 4, []int{8}, 3).Model("mlp"), time.Time{})
		want, _ := onnxbuild.RandomMLP(10, 4, []int{8}, 3).Model("mlp").Marshal()
		waitFor(t, m.URL(), "the new mlp version", func(ms []modelView) bool {
			mv := find(ms, "mlp", "shadow")
			return mv != nil && mv.Version == sha12(want) && len(ms) == 3
		})
	})
	step("promote the replaced model", func() { mustAdmin("POST", "/models/mlp/promote", nil) })
	step("delete a shadow", func() {
		os.Remove(filepath.Join(dir, "iris-v2.onnx"))
		waitFor(t, m.URL(), "iris-v2 unloaded", func(ms []modelView) bool { return find(ms, "iris-v2", "") == nil })
	})
	step("delete the primary's file", func() {
		os.Remove(filepath.Join(dir, "mlp.onnx"))
		waitFor(t, m.URL(), "a warning on the primary", func(ms []modelView) bool {
			mv := find(ms, "mlp", "primary")
			return mv != nil && len(mv.Warnings) > 0
		})
	})
	step("roll back to a shadow whose file remains", func() { mustAdmin("POST", "/models/rollback", nil) })
	stop.Store(true)
	wg.Wait()
	if n := p.failures.Load(); n != 0 {
		t.Errorf("%d of %d requests failed during the lifecycle", n, p.requests.Load())
	}
	if len(p.mixed) > 0 {
		t.Errorf("answers not consistent with their model version: %v", p.mixed[:min(3, len(p.mixed))])
	}
	if len(p.versions) < 3 {
		t.Errorf("answers came from %v; want at least three versions", p.versions)
	}
	t.Logf("%d requests, answers by version: %v", p.requests.Load(), p.versions)
}

// Ensure that while there are shadows, the threads doing shadow work get
// scheduler slots of their own and the GC target grows with the number of
// shadows, that both go back when the shadows leave, and that Close
// restores what the process had.
func TestRuntimeFollowsShadows(t *testing.T) {
	if os.Getenv("GOMAXPROCS") != "" || os.Getenv("GOGC") != "" {
		t.Skip("GOMAXPROCS or GOGC is set, so the server leaves the runtime alone")
	}
	gcPercent := func() int {
		v := debug.SetGCPercent(-1)
		debug.SetGCPercent(v)
		return v
	}
	base, baseGC := runtime.GOMAXPROCS(0), gcPercent()
	dir := t.TempDir()
	copyModel(t, filepath.Join("..", "..", "models", "iris-v1.onnx"), filepath.Join(dir, "iris-v1.onnx"))
	m := startServer(t, dir, append(fastWatch, "--shadow-workers", "3")...)
	check := func(when string, procs, gc int) {
		t.Helper()
		if got := runtime.GOMAXPROCS(0); got != procs {
			t.Errorf("%s: GOMAXPROCS %d, want %d", when, got, procs)
		}
		if got := gcPercent(); got != gc {
			t.Errorf("%s: GOGC %d, want %d", when, got, gc)
		}
	}
	check("no shadows", base, defaultGCPercent)
	copyModel(t, filepath.Join("..", "..", "models", "iris-v2.onnx"), filepath.Join(dir, "iris-v2.onnx"))
	waitFor(t, m.URL(), "iris-v2 as a shadow", func(ms []modelView) bool { return find(ms, "iris-v2", "shadow") != nil })
	// Three workers and the store's thread for shadow results.
	// Three workers, the store's thread and the backfill thread.
	check("one shadow", base+5, 1400) // 400 + 2.5 × 400
	copyModel(t, filepath.Join("..", "..", "models", "iris-v2.onnx"), filepath.Join(dir, "iris-v3.onnx"))
	waitFor(t, m.URL(), "iris-v3 as a shadow", func(ms []modelView) bool { return find(ms, "iris-v3", "shadow") != nil })
	check("two shadows", base+5, 2400)
	os.Remove(filepath.Join(dir, "iris-v2.onnx"))
	os.Remove(filepath.Join(dir, "iris-v3.onnx"))
	waitFor(t, m.URL(), "the shadows gone", func(ms []modelView) bool { return find(ms, "iris-v2", "") == nil && find(ms, "iris-v3", "") == nil })
	check("shadows gone", base, defaultGCPercent)
	m.Close()
	check("after Close", base, baseGC)
}

// copyModel writes src to dst through a temporary name, as a deploy would.
func copyModel(tb testing.TB, src, dst string) {
	tb.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		tb.Fatal(err)
	}
	tmp := filepath.Join(filepath.Dir(dst), "."+filepath.Base(dst)+".tmp")
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		tb.Fatal(err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		tb.Fatal(err)
	}
}
