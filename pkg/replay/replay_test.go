package replay_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

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

// Ensure CSV and JSON-lines rows are sent as the exact bodies expected, with
// unique ids, and that labels follow under the same ids, only after a
// successful prediction.
func TestRunBodies(t *testing.T) {
	csv := "a,b,label\n1,2,0\n3,4,1\n9.9,9.9,2\n"
	jsonl := `{"input":[[1,2]],"label":0}` + "\n" +
		`{"id":"own","inputs":{"x":[[3,4]]},"label":1}` + "\n" +
		"\n" +
		`{"input":[[9.9,9.9]],"label":2}` + "\n" +
		`{"input":[[5,6]]}` + "\n"
	for _, tt := range []struct {
		name         string
		file         *replay.File
		cfg          replay.Config
		wantPredicts map[string]string
		wantFeedback []string
		wantOK       int
	}{
		{
			name: "csv shorthand",
			file: readCSV(t, csv, replay.ReadOptions{}),
			cfg:  replay.Config{IDPrefix: "p", Labels: true},
			wantPredicts: map[string]string{
				"p-1-2": `{"input":[[1,2]],"id":"p-1-2"}`,
				"p-1-3": `{"input":[[3,4]],"id":"p-1-3"}`,
				"p-1-4": `{"input":[[9.9,9.9]],"id":"p-1-4"}`,
			},
			wantFeedback: []string{
				`{"id":"p-1-2","label":0}`,
				`{"id":"p-1-3","label":1}`,
			},
			wantOK: 2,
		},
		{
			name: "csv input name, repeated",
			file: readCSV(t, csv, replay.ReadOptions{InputName: "x"}),
			cfg:  replay.Config{IDPrefix: "p", Labels: true, Repeat: 2, Concurrency: 3},
			wantPredicts: map[string]string{
				"p-1-2": `{"inputs":{"x":[[1,2]]},"id":"p-1-2"}`,
				"p-1-3": `{"inputs":{"x":[[3,4]]},"id":"p-1-3"}`,
				"p-1-4": `{"inputs":{"x":[[9.9,9.9]]},"id":"p-1-4"}`,
				"p-2-2": `{"inputs":{"x":[[1,2]]},"id":"p-2-2"}`,
				"p-2-3": `{"inputs":{"x":[[3,4]]},"id":"p-2-3"}`,
				"p-2-4": `{"inputs":{"x":[[9.9,9.9]]},"id":"p-2-4"}`,
			},
			wantFeedback: []string{
				`{"id":"p-1-2","label":0}`,
				`{"id":"p-1-3","label":1}`,
				`{"id":"p-2-2","label":0}`,
				`{"id":"p-2-3","label":1}`,
			},
			wantOK: 4,
		},
		{
			name: "csv with labels off",
			file: readCSV(t, csv, replay.ReadOptions{}),
			cfg:  replay.Config{IDPrefix: "p", Limit: 2},
			wantPredicts: map[string]string{
				"p-1-2": `{"input":[[1,2]],"id":"p-1-2"}`,
				"p-1-3": `{"input":[[3,4]],"id":"p-1-3"}`,
			},
			wantOK: 2,
		},
		{
			name: "jsonl",
			file: readJSONL(t, jsonl),
			cfg:  replay.Config{IDPrefix: "q", Labels: true},
			wantPredicts: map[string]string{
				"q-1-1": `{"input":[[1,2]],"id":"q-1-1"}`,
				"own":   `{"inputs":{"x":[[3,4]]},"id":"own"}`,
				"q-1-4": `{"input":[[9.9,9.9]],"id":"q-1-4"}`,
				"q-1-5": `{"input":[[5,6]],"id":"q-1-5"}`,
			},
			wantFeedback: []string{
				`{"id":"own","label":1}`,
				`{"id":"q-1-1","label":0}`,
			},
			wantOK: 3,
		},
		{
			name: "jsonl repeated, limited",
			file: readJSONL(t, jsonl),
			cfg:  replay.Config{IDPrefix: "q", Labels: true, Repeat: 3, Limit: 6},
			wantPredicts: map[string]string{
				"q-1-1": `{"input":[[1,2]],"id":"q-1-1"}`,
				"own-1": `{"inputs":{"x":[[3,4]]},"id":"own-1"}`,
				"q-1-4": `{"input":[[9.9,9.9]],"id":"q-1-4"}`,
				"q-1-5": `{"input":[[5,6]],"id":"q-1-5"}`,
				"q-2-1": `{"input":[[1,2]],"id":"q-2-1"}`,
				"own-2": `{"inputs":{"x":[[3,4]]},"id":"own-2"}`,
			},
			wantFeedback: []string{
				`{"id":"own-1","label":1}`,
				`{"id":"own-2","label":1}`,
				`{"id":"q-1-1","label":0}`,
				`{"id":"q-2-1","label":0}`,
			},
			wantOK: 5,
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := newFakeServer(t, func(f *fakeServer) {
				// The server refuses the 9.9 rows, so their labels must not be sent.
				f.predictStatus = func(id string, body []byte) int {
					if bytes.Contains(body, []byte("9.9")) {
						return http.StatusBadRequest
					}
					return http.StatusOK
				}
			})
			cfg := tt.cfg
			cfg.URL = srv.URL
			s := run(t, context.Background(), cfg, tt.file)
			if got, want := srv.gotPredicts(), tt.wantPredicts; !reflect.DeepEqual(got, want) {
				t.Errorf("predict bodies\n got %v\nwant %v", got, want)
			}
			if got, want := srv.gotFeedback(), tt.wantFeedback; !reflect.DeepEqual(got, want) {
				t.Errorf("feedback bodies\n got %v\nwant %v", got, want)
			}
			if got, want := s.Sent, len(tt.wantPredicts); got != want {
				t.Errorf("sent %d, want %d", got, want)
			}
			if got, want := s.OK, tt.wantOK; got != want {
				t.Errorf("ok %d, want %d", got, want)
			}
			if got, want := s.Labelled, len(tt.wantFeedback); got != want {
				t.Errorf("labelled %d, want %d", got, want)
			}
			if got, want := s.ReportURL, srv.URL+"/report"; got != want {
				t.Errorf("report URL %q, want %q", got, want)
			}
		})
	}
}

// Ensure every request of a repeated replay of the demo file has its own id,
// and two runs with default prefixes never share one.
func TestRunUniqueIDs(t *testing.T) {
	f, err := replay.ReadFile(testdata(t, "iris-holdout.csv"), replay.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	srv := newFakeServer(t, nil) // the fake fails the test on a repeated id
	for range 2 {
		s := run(t, context.Background(), replay.Config{URL: srv.URL, Concurrency: 8, Repeat: 3, Labels: true}, f)
		if got, want := s.OK, 135; got != want {
			t.Errorf("ok %d, want %d", got, want)
		}
	}
	if got, want := len(srv.gotPredicts()), 270; got != want {
		t.Errorf("%d distinct ids, want %d", got, want)
	}
}

// Ensure the rate is held: 50 rows at 100/s cannot finish sooner than the
// schedule allows. Only a lower bound is asserted so a slow machine cannot
// make the test flaky.
func TestRunRate(t *testing.T) {
	var b strings.Builder
	b.WriteString("a,b\n")
	for i := range 50 {
		fmt.Fprintf(&b, "%d,1\n", i)
	}
	f := readCSV(t, b.String(), replay.ReadOptions{})
	for _, conc := range []int{1, 4} {
		t.Run(fmt.Sprint("concurrency ", conc), func(t *testing.T) {
			srv := newFakeServer(t, nil)
			start := time.Now()
			s := run(t, context.Background(), replay.Config{URL: srv.URL, Rate: 100, Concurrency: conc}, f)
			if got, want := time.Since(start), 450*time.Millisecond; got < want {
				t.Errorf("took %v, want at least %v", got, want)
			}
			if got, want := s.OK, 50; got != want {
				t.Errorf("ok %d, want %d", got, want)
			}
			if got := s.Rate(); got > 110 {
				t.Errorf("achieved rate %.1f/s, want at most about 100/s", got)
			}
		})
	}
}

// Ensure bad rows are skipped and counted while the good ones are sent.
func TestRunSkipsBadRows(t *testing.T) {
	srv := newFakeServer(t, nil)
	f := readCSV(t, "a,label\n1,0\nx,0\n2,1\n", replay.ReadOptions{})
	s := run(t, context.Background(), replay.Config{URL: srv.URL, IDPrefix: "p", Labels: true}, f)
	if got, want := srv.gotPredicts(), map[string]string{
		"p-1-2": `{"input":[[1]],"id":"p-1-2"}`,
		"p-1-4": `{"input":[[2]],"id":"p-1-4"}`,
	}; !reflect.DeepEqual(got, want) {
		t.Errorf("predict bodies\n got %v\nwant %v", got, want)
	}
	if got, want := s.Skipped, 1; got != want {
		t.Errorf("skipped %d, want %d", got, want)
	}
	var out strings.Builder
	if err := s.Print(&out); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(strings.Fields(out.String()), " "), "bad rows skipped 1"; !strings.Contains(got, want) {
		t.Errorf("summary lacks %q:\n%s", want, got)
	}
}

// Ensure 4xx and 5xx answers, timeouts and refused labels are counted in the
// summary and do not stop the run.
func TestRunServerErrors(t *testing.T) {
	srv := newFakeServer(t, func(f *fakeServer) {
		f.predictStatus = func(id string, _ []byte) int {
			switch id {
			case "p-1-3", "p-1-4":
				return http.StatusBadRequest
			case "p-1-5":
				return http.StatusServiceUnavailable
			case "p-1-6":
				return http.StatusInternalServerError
			}
			return http.StatusOK
		}
		f.hold = func(id string, r *http.Request) {
			if id == "p-1-7" {
				<-r.Context().Done() // until the client gives up
			}
		}
		f.feedbackStatus = func(id string) int {
			if id == "p-1-8" {
				return http.StatusNotFound
			}
			return http.StatusOK
		}
	})
	f := readCSV(t, "a,label\n1,0\n2,0\n3,0\n4,0\n5,0\n6,0\n7,0\n8,0\n9,0\n", replay.ReadOptions{})
	s := run(t, context.Background(), replay.Config{URL: srv.URL, IDPrefix: "p", Labels: true, Timeout: 200 * time.Millisecond}, f)
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"failed", s.Failed, map[int]int{0: 1, 400: 2, 500: 1, 503: 1}},
		{"ok", s.OK, 4},
		{"sent", s.Sent, 9},
		{"labelled", s.Labelled, 3},
		{"label failures", s.LabelFailed, 1},
		{"label failure", s.LabelSample, "404 invalid: unknown id p-1-8"},
		{"400 sample", s.Samples[400], "invalid: refused p-1-3 (line 3)"},
		{"timeout sample", s.Samples[0], "no answer within 200ms (--timeout) (line 7)"},
	} {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, c.got, c.want)
		}
	}
	var out strings.Builder
	if err := s.Print(&out); err != nil {
		t.Fatal(err)
	}
	words := strings.Join(strings.Fields(out.String()), " ")
	for _, want := range []string{"failed 5 ", "400 Bad Request: 2, first:", "no answer: 1, first:", "label failures 1, first:"} {
		if !strings.Contains(words, want) {
			t.Errorf("summary lacks %q:\n%s", want, out.String())
		}
	}
}

// Ensure a server that is not there gives a clear error and sends nothing.
func TestRunNoServer(t *testing.T) {
	ts := httptest.NewServer(http.NotFoundHandler())
	url := ts.URL
	ts.Close()
	f := readCSV(t, "a\n1\n", replay.ReadOptions{})
	s, err := replay.Run(context.Background(), replay.Config{URL: url}, f)
	if !errors.Is(err, replay.ErrNoServer) {
		t.Fatalf("error %v, want ErrNoServer", err)
	}
	if got, want := err.Error(), "no server at "+url+": start it with `make run`"; !strings.HasPrefix(got, want) {
		t.Errorf("error %q, want it to start with %q", got, want)
	}
	if s != nil {
		t.Errorf("summary %+v, want none", s)
	}
}

// Ensure a server that answers the health check but drops every prediction
// counts as no server.
func TestRunServerDropsEverything(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("POST /predict", func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
	})
	ts := httptest.NewServer(mux)
	defer ts.Close()
	f := readCSV(t, "a\n1\n2\n", replay.ReadOptions{})
	s, err := replay.Run(context.Background(), replay.Config{URL: ts.URL}, f)
	if !errors.Is(err, replay.ErrNoServer) {
		t.Fatalf("error %v, want ErrNoServer", err)
	}
	if s == nil || s.Failed[0] != 2 {
		t.Errorf("summary %+v, want 2 failures without an answer", s)
	}
}

// Ensure cancelling stops the run early and still returns the summary so far.
func TestRunCancel(t *testing.T) {
	var b strings.Builder
	b.WriteString("a\n")
	for i := range 45 {
		fmt.Fprintf(&b, "%d\n", i)
	}
	f := readCSV(t, b.String(), replay.ReadOptions{})
	for _, tt := range []struct {
		name          string
		cfg           replay.Config
		hold          bool
		wantAbandoned int
	}{
		{name: "while waiting for the schedule", cfg: replay.Config{Rate: 20, Concurrency: 2}},
		{name: "with requests in flight", cfg: replay.Config{Concurrency: 3}, hold: true, wantAbandoned: 3},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := newFakeServer(t, func(fs *fakeServer) {
				if tt.hold {
					fs.hold = func(_ string, r *http.Request) { <-r.Context().Done() }
				}
			})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go func() {
				// Cancel once a few requests have arrived.
				for srv.count() < 3 {
					time.Sleep(5 * time.Millisecond)
				}
				cancel()
			}()
			cfg := tt.cfg
			cfg.URL = srv.URL
			start := time.Now()
			s := run(t, ctx, cfg, f)
			if got, limit := time.Since(start), 2*time.Second; got > limit {
				t.Errorf("took %v to stop, want under %v", got, limit)
			}
			if !s.Interrupted {
				t.Error("summary not marked interrupted")
			}
			if s.Sent >= 45 {
				t.Errorf("sent %d, want fewer than 45", s.Sent)
			}
			// At 20/s a request is rarely in flight at the cancel, but a
			// loaded machine can make it so; held requests always are.
			if got, want := s.Abandoned, tt.wantAbandoned; (tt.hold && got != want) || (!tt.hold && got > tt.cfg.Concurrency) {
				t.Errorf("abandoned %d, want %d (at most the concurrency when not held)", got, want)
			}
			if got, want := s.OK+s.FailedTotal()+s.Abandoned, s.Sent; got != want {
				t.Errorf("ok+failed+abandoned = %d, want sent = %d", got, want)
			}
			if got := s.FailedTotal(); got != 0 {
				t.Errorf("%d failures, want cancelled requests not counted as failures", got)
			}
		})
	}
}
