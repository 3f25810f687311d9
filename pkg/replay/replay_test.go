package replay_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/understudy-ml/understudy/pkg/replay"
)

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
