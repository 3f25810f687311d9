package replay_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/understudy-ml/understudy/pkg/replay"
)

// These tests replay against servers that fail: answers of 4xx and 5xx,
// timeouts, refused labels, no server at all, a server that drops every
// prediction, and a run cancelled half way.

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
