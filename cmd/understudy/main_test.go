package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/understudy-ml/understudy/pkg/onnxbuild"
)

// ortLib finds the library scripts/fetch-ort.sh fetched; make test passes it
// in UNDERSTUDY_ORT_LIB.
func ortLib() string {
	if p := os.Getenv("UNDERSTUDY_ORT_LIB"); p != "" {
		return p
	}
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", ortCacheRel)
}

// writeModel writes m as dir/name.onnx with the given modification time.
func writeModel(tb testing.TB, dir, name string, m *onnxbuild.Model, mtime time.Time) {
	tb.Helper()
	path := filepath.Join(dir, name+".onnx")
	if err := m.WriteFile(path); err != nil {
		tb.Fatal(err)
	}
	if !mtime.IsZero() {
		if err := os.Chtimes(path, mtime, mtime); err != nil {
			tb.Fatal(err)
		}
	}
}

// startServer runs a Main on a free loopback port over the models in dir,
// closed when the test ends.
func startServer(tb testing.TB, dir string, args ...string) *Main {
	tb.Helper()
	m := startServerWith(tb, dir, nil, args...)
	tb.Cleanup(func() {
		if err := m.Close(); err != nil {
			tb.Errorf("close: %v", err)
		}
	})
	return m
}

type response struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r response) json(tb testing.TB) map[string]any {
	tb.Helper()
	var v map[string]any
	if err := json.Unmarshal(r.Body, &v); err != nil {
		tb.Fatalf("response is not JSON: %v: %s", err, r.Body)
	}
	return v
}

func testRequest(tb testing.TB, method, url string, body []byte) response {
	tb.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, b}
}

// modelsDir writes the models most tests share: multi (several inputs and
// outputs, the oldest file, so primary by default), identity over int8
// (incompatible), and a text file that is not a model.
func modelsDir(tb testing.TB) string {
	tb.Helper()
	dir := tb.TempDir()
	old := time.Now().Add(-time.Hour)
	writeModel(tb, dir, "multi", onnxbuild.MultiIO(), old)
	writeModel(tb, dir, "int8", onnxbuild.Identity(onnxbuild.Int8, []int64{-1, 3}), time.Time{})
	if err := os.WriteFile(filepath.Join(dir, "broken.onnx"), []byte("not a model"), 0o644); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "README"), []byte("ignored"), 0o644); err != nil {
		tb.Fatal(err)
	}
	return dir
}

// Ensure a prediction over several inputs returns every output, the model's
// name and version, the client's id in the body and the header, and latency.
func TestPredict(t *testing.T) {
	m := startServer(t, modelsDir(t))
	r := testRequest(t, "POST", m.URL()+"/predict", []byte(`{"id": "req-1", "inputs": {"a": [[1, 2, 3], [4, 5, 6]], "b": {"shape": [1, 2], "data": [7, -8]}}}`))
	if r.Status != 200 {
		t.Fatalf("status = %d: %s", r.Status, r.Body)
	}
	if got := r.Header.Get("X-Request-Id"); got != "req-1" {
		t.Errorf("X-Request-Id = %q, want req-1", got)
	}
	var got struct {
		ID    string `json:"id"`
		Model struct {
			Name    string `json:"name"`
			Version string `json:"version"`
		} `json:"model"`
		Outputs   map[string]any `json:"outputs"`
		LatencyUS *int64         `json:"latency_us"`
	}
	if err := json.Unmarshal(r.Body, &got); err != nil {
		t.Fatal(err)
	}
	data, _ := onnxbuild.MultiIO().Marshal()
	if got.ID != "req-1" || got.Model.Name != "multi" || got.Model.Version != sha12(data) || got.LatencyUS == nil {
		t.Errorf("got %+v, want id req-1, model multi@%s and a latency", got, sha12(data))
	}
	want := map[string]any{
		"sum":       []any{[]any{2.0, 4.0, 6.0}, []any{8.0, 10.0, 12.0}},
		"b_doubled": []any{[]any{14.0, -16.0}},
		"total":     21.0,
	}
	if !reflect.DeepEqual(got.Outputs, want) {
		t.Errorf("outputs = %v, want %v", got.Outputs, want)
	}
}

// Ensure a generated id is returned when the client gives none, and the
// single-input shorthand works.
func TestPredictShorthandAndGeneratedID(t *testing.T) {
	dir := t.TempDir()
	writeModel(t, dir, "scalar", onnxbuild.Scalar(), time.Time{})
	m := startServer(t, dir)
	r := testRequest(t, "POST", m.URL()+"/predict", []byte(`{"input": [[1, 2, 3, 4.5]]}`))
	if r.Status != 200 {
		t.Fatalf("status = %d: %s", r.Status, r.Body)
	}
	body := r.json(t)
	if id := r.Header.Get("X-Request-Id"); id == "" || body["id"] != id {
		t.Errorf("id = %v, header %q: want the same generated id", body["id"], id)
	}
	if got := body["outputs"].(map[string]any)["total"]; got != 10.5 {
		t.Errorf("total = %v, want 10.5", got)
	}
}

// Ensure every kind of bad request gets a 4xx whose message names the
// problem, and never a 500.
func TestPredictBadInput(t *testing.T) {
	dir := modelsDir(t)
	writeModel(t, dir, "fixed", onnxbuild.FixedShape(), time.Time{})
	writeModel(t, dir, "u8", onnxbuild.Identity(onnxbuild.Uint8, []int64{-1}), time.Time{})
	writeModel(t, dir, "i32", onnxbuild.Identity(onnxbuild.Int32, []int64{-1}), time.Time{})
	m := startServer(t, dir, "--max-body", "2KiB")
	tests := []struct {
		name   string
		method string
		path   string
		body   string
		status int
		want   []string
	}{
		{"malformed JSON", "POST", "/predict", `{"inputs": {"a": [1, 2}`, 400, []string{"malformed JSON"}},
		{"body ends inside an array", "POST", "/predict", `{"input": [[5.9, 3.0, 5.1`, 400, []string{"malformed JSON: missing closing ']'"}},
		{"empty body", "POST", "/predict", ``, 400, []string{"empty"}},
		{"body too large", "POST", "/predict", `{"inputs": {"a": [` + strings.Repeat("1,", 2000) + `1]}}`, 413, []string{"limit", "2048"}},
		{"missing input", "POST", "/predict", `{"inputs": {"a": [[1, 2, 3]]}}`, 400, []string{`missing input "b"`, `"a" (float32 [-1,3])`, `"b" (int64 [-1,2])`}},
		{"unknown input", "POST", "/predict", `{"inputs": {"a": [[1, 2, 3]], "b": [[1, 2]], "c": [1]}}`, 400, []string{`unknown input "c"`, `"a"`, `"b"`}},
		{"no inputs", "POST", "/predict", `{"id": "x"}`, 400, []string{`no "inputs"`}},
		{"shorthand on two inputs", "POST", "/predict", `{"input": [[1, 2, 3]]}`, 400, []string{"one input", "has 2"}},
		{"unknown field", "POST", "/predict", `{"inputz": {}}`, 400, []string{"inputz"}},
		{"wrong rank", "POST", "/predict", `{"inputs": {"a": [1, 2, 3], "b": [[1, 2]]}}`, 400, []string{`"a"`, "rank 2", "[-1,3]"}},
		{"wrong fixed dim", "POST", "/predict", `{"inputs": {"a": [[1, 2]], "b": [[1, 2]]}}`, 400, []string{"dimension 1 is 2, want 3", "[-1,3]"}},
		{"ragged", "POST", "/predict", `{"inputs": {"a": [[1, 2, 3], [4, 5]], "b": [[1, 2]]}}`, 400, []string{"ragged"}},
		{"string for number", "POST", "/predict", `{"inputs": {"a": [[1, "2", 3]], "b": [[1, 2]]}}`, 400, []string{"a string", "float32"}},
		{"non-integer", "POST", "/predict", `{"inputs": {"a": [[1, 2, 3]], "b": [[1, 2.5]]}}`, 400, []string{"2.5", "not an integer", "int64"}},
		{"explicit shape mismatch", "POST", "/predict", `{"inputs": {"a": {"shape": [2, 3], "data": [1, 2, 3]}, "b": [[1, 2]]}}`, 400, []string{"[2,3]", "6 elements", "data has 3"}},
		{"wrong method", "GET", "/predict", ``, 405, []string{"GET", "not allowed"}},
		{"unknown route", "GET", "/nope", ``, 404, []string{"/nope"}},
		{"id too long", "POST", "/predict", `{"id": "` + strings.Repeat("x", 200) + `", "inputs": {}}`, 400, []string{"id"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body []byte
			if tt.body != "" || tt.method == "POST" {
				body = []byte(tt.body)
			}
			r := testRequest(t, tt.method, m.URL()+tt.path, body)
			if r.Status != tt.status {
				t.Fatalf("status = %d, want %d: %s", r.Status, tt.status, r.Body)
			}
			msg, _ := r.json(t)["error"].(string)
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not mention %q", msg, w)
				}
			}
		})
	}

	// Integer range checks go through real models of each type.
	for _, tt := range []struct{ model, body, want string }{
		{"int8", `{"input": [[1, 2, 300]]}`, "out of range for int8"},
		{"u8", `{"input": [256]}`, "out of range for uint8"},
		{"u8", `{"input": [-1]}`, "out of range for uint8"},
		{"i32", `{"input": [3000000000]}`, "out of range for int32"},
	} {
		t.Run("range "+tt.model, func(t *testing.T) {
			// Each model is served as primary by a server of its own.
			d := t.TempDir()
			src, _ := os.ReadFile(filepath.Join(dir, tt.model+".onnx"))
			os.WriteFile(filepath.Join(d, tt.model+".onnx"), src, 0o644)
			s := startServer(t, d)
			r := testRequest(t, "POST", s.URL()+"/predict", []byte(tt.body))
			if msg, _ := r.json(t)["error"].(string); r.Status != 400 || !strings.Contains(msg, tt.want) {
				t.Errorf("status %d error %q, want 400 mentioning %q", r.Status, msg, tt.want)
			}
		})
	}
}

// Ensure /predict answers 503 and /readyz is not ready when no model loads,
// while /healthz stays alive.
func TestNoPrimary(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "bad.onnx"), []byte{0x08, 0x01, 0xff}, 0o644)
	m := startServer(t, dir)
	r := testRequest(t, "POST", m.URL()+"/predict", []byte(`{"input": [1]}`))
	if msg, _ := r.json(t)["error"].(string); r.Status != 503 || !strings.Contains(msg, "no primary") {
		t.Errorf("predict: status %d %q, want 503 naming the missing primary", r.Status, msg)
	}
	if r := testRequest(t, "GET", m.URL()+"/readyz", nil); r.Status != 503 {
		t.Errorf("readyz = %d, want 503", r.Status)
	}
	if r := testRequest(t, "GET", m.URL()+"/healthz", nil); r.Status != 200 {
		t.Errorf("healthz = %d, want 200", r.Status)
	}
}

// Ensure /models lists every file with its role, version, signature and
// metadata, and a broken file with its error, while the others serve.
func TestModels(t *testing.T) {
	dir := modelsDir(t)
	writeModel(t, dir, "multi2", onnxbuild.MultiIO(), time.Time{})
	m := startServer(t, dir)
	if r := testRequest(t, "GET", m.URL()+"/readyz", nil); r.Status != 200 {
		t.Errorf("readyz = %d, want 200", r.Status)
	}
	r := testRequest(t, "GET", m.URL()+"/models", nil)
	var got struct {
		Models []struct {
			Name      string          `json:"name"`
			Role      string          `json:"role"`
			Version   string          `json:"version"`
			Size      int64           `json:"size"`
			Error     string          `json:"error"`
			Reason    string          `json:"reason"`
			Signature json.RawMessage `json:"signature"`
			Metadata  struct {
				Producer string `json:"producer"`
			} `json:"metadata"`
			LoadedAt string `json:"loaded_at"`
		} `json:"models"`
	}
	if err := json.Unmarshal(r.Body, &got); err != nil {
		t.Fatal(err)
	}
	roles := map[string]string{}
	for _, mi := range got.Models {
		roles[mi.Name] = mi.Role
		switch mi.Name {
		case "multi":
			data, _ := onnxbuild.MultiIO().Marshal()
			if mi.Version != sha12(data) || mi.Size != int64(len(data)) || mi.Metadata.Producer != onnxbuild.Producer || mi.LoadedAt == "" {
				t.Errorf("multi = %+v", mi)
			}
			if !strings.Contains(string(mi.Signature), `"dims": [`) || !strings.Contains(string(mi.Signature), `-1`) {
				t.Errorf("signature %s lacks dims with -1", mi.Signature)
			}
		case "broken":
			if mi.Error == "" {
				t.Errorf("broken has no error: %+v", mi)
			}
		case "int8":
			if !strings.Contains(mi.Reason, `input "x" does not exist`) {
				t.Errorf("int8 reason = %q", mi.Reason)
			}
		}
	}
	want := map[string]string{"multi": "primary", "multi2": "shadow", "int8": "incompatible", "broken": "failed"}
	if !reflect.DeepEqual(roles, want) {
		t.Errorf("roles = %v, want %v", roles, want)
	}
}

// Ensure --primary picks the named model over the oldest file, and an
// unknown name is a start-up error that says what is missing.
func TestPrimaryFlag(t *testing.T) {
	dir := modelsDir(t)
	m := startServer(t, dir, "--primary", "int8")
	r := testRequest(t, "POST", m.URL()+"/predict", []byte(`{"input": [[1, -2, 3]]}`))
	if r.Status != 200 || r.json(t)["model"].(map[string]any)["name"] != "int8" {
		t.Errorf("status %d body %s, want an answer from int8", r.Status, r.Body)
	}
	bad := NewMain()
	bad.ParseFlags([]string{"--addr", "127.0.0.1:0", "--models-dir", dir, "--primary", "nope", "--db", filepath.Join(t.TempDir(), "u.db"), "--ort-lib", ortLib()}, io.Discard)
	bad.Log = zerolog.Nop()
	err := bad.Run(context.Background())
	bad.Close()
	if err == nil || !strings.Contains(err.Error(), "nope.onnx") {
		t.Errorf("Run = %v, want an error naming nope.onnx", err)
	}
}

// Ensure flags fall back to UNDERSTUDY_* environment variables.
func TestEnvOverrides(t *testing.T) {
	t.Setenv("UNDERSTUDY_ADDR", "127.0.0.1:9999")
	t.Setenv("UNDERSTUDY_MAX_BODY", "1MiB")
	t.Setenv("UNDERSTUDY_PRIMARY", "iris-v1")
	m := NewMain()
	if err := m.ParseFlags([]string{"--primary", "flag-wins"}, io.Discard); err != nil {
		t.Fatal(err)
	}
	if m.Config.Addr != "127.0.0.1:9999" || m.Config.MaxBody != 1<<20 || m.Config.Primary != "flag-wins" {
		t.Errorf("config = %+v", m.Config)
	}
}

func sha12(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])[:12]
}

// Ensure values that would crash the server or quietly disable a feature
// are refused at start, naming the flag.
func TestBadFlagValues(t *testing.T) {
	for _, args := range [][]string{
		{"--rescan", "0"},
		{"--rescan", "-1s"},
		{"--shadow-timeout", "0"},
		{"--shadow-timeout", "-1s"},
		{"--shutdown-timeout", "-1s"},
		{"--drain-timeout", "-1s"},
		{"--settle", "-1s"},
		{"--shadow-sampling", "NaN"},
		{"--max-body", "9000000000GiB"},
		{"--shed-at", "-1"},
	} {
		err := NewMain().ParseFlags(args, nil)
		if err == nil || !strings.Contains(err.Error(), strings.TrimPrefix(args[0], "--")) {
			t.Errorf("%v: got %v, want an error naming the flag", args, err)
		}
	}
	if err := NewMain().ParseFlags([]string{"--drain-timeout", "0", "--settle", "0"}, nil); err != nil {
		t.Errorf("--drain-timeout 0 --settle 0: %v, want them allowed", err)
	}
}
