package replay_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"

	"github.com/understudy-ml/understudy/pkg/replay"
)

// fakeServer is a stand-in for `understudy serve` that checks and records
// what the replay client sends.
type fakeServer struct {
	URL string
	t   testing.TB

	// predictStatus, if set, picks the status for a prediction by its body.
	predictStatus func(id string, body []byte) int
	// feedbackStatus, if set, picks the status for a label by its id.
	feedbackStatus func(id string) int
	// hold, if set, is run before a prediction is answered.
	hold func(id string, r *http.Request)

	mu       sync.Mutex
	predicts map[string]string // id → body
	order    []string          // ids in arrival order
	ok       map[string]bool   // ids answered 200
	feedback []string          // bodies in arrival order
}

func newFakeServer(tb testing.TB, setup func(*fakeServer)) *fakeServer {
	tb.Helper()
	f := &fakeServer{t: tb, predicts: map[string]string{}, ok: map[string]bool{}}
	if setup != nil {
		setup(f)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"status":"alive"}`)
	})
	mux.HandleFunc("POST /predict", f.handlePredict)
	mux.HandleFunc("POST /feedback", f.handleFeedback)
	ts := httptest.NewServer(mux)
	tb.Cleanup(ts.Close)
	f.URL = ts.URL
	return f
}

func writeError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"error":%q,"code":"invalid","request_id":"x"}`, msg)
}

// decodeStrict decodes body into v, refusing unknown keys as the server does.
func decodeStrict(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

func (f *fakeServer) handlePredict(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var req struct {
		ID     string                     `json:"id"`
		Input  json.RawMessage            `json:"input"`
		Inputs map[string]json.RawMessage `json:"inputs"`
	}
	if err := decodeStrict(body, &req); err != nil || req.ID == "" || (req.Input == nil) == (req.Inputs == nil) {
		f.t.Errorf("malformed predict body %s (%v)", body, err)
		writeError(w, http.StatusBadRequest, "malformed")
		return
	}
	if got := r.Header.Get("Content-Type"); got != "application/json" {
		f.t.Errorf("Content-Type %q, want application/json", got)
	}
	f.mu.Lock()
	if _, dup := f.predicts[req.ID]; dup {
		f.t.Errorf("id %q sent twice", req.ID)
	}
	f.predicts[req.ID] = string(body)
	f.order = append(f.order, req.ID)
	f.mu.Unlock()
	if f.hold != nil {
		f.hold(req.ID, r)
	}
	status := http.StatusOK
	if f.predictStatus != nil {
		status = f.predictStatus(req.ID, body)
	}
	if status != http.StatusOK {
		writeError(w, status, "refused "+req.ID)
		return
	}
	f.mu.Lock()
	f.ok[req.ID] = true
	f.mu.Unlock()
	fmt.Fprintf(w, `{"id":%q,"model":{"name":"iris-v1","version":"1"},"outputs":{"label":[0]},"latency_us":12}`, req.ID)
}

func (f *fakeServer) handleFeedback(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var fb struct {
		ID    string   `json:"id"`
		Label *float64 `json:"label"`
	}
	if err := decodeStrict(body, &fb); err != nil || fb.ID == "" || fb.Label == nil {
		f.t.Errorf("malformed feedback body %s (%v)", body, err)
		writeError(w, http.StatusBadRequest, "malformed")
		return
	}
	f.mu.Lock()
	if !f.ok[fb.ID] {
		f.t.Errorf("label for %q arrived without a successful prediction first", fb.ID)
	}
	f.feedback = append(f.feedback, string(body))
	f.mu.Unlock()
	if f.feedbackStatus != nil {
		if s := f.feedbackStatus(fb.ID); s != http.StatusOK {
			writeError(w, s, "unknown id "+fb.ID)
			return
		}
	}
	io.WriteString(w, `{"labelled":1,"replaced":0}`)
}

func (f *fakeServer) gotPredicts() map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string]string, len(f.predicts))
	for k, v := range f.predicts {
		out[k] = v
	}
	return out
}

func (f *fakeServer) gotFeedback() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := slices.Clone(f.feedback)
	slices.Sort(out)
	return out
}

func (f *fakeServer) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.order)
}

// run replays f against the fake and fails the test on an error.
func run(tb testing.TB, ctx context.Context, cfg replay.Config, f *replay.File) *replay.Summary {
	tb.Helper()
	s, err := replay.Run(ctx, cfg, f)
	if err != nil {
		tb.Fatalf("Run: %v", err)
	}
	return s
}
