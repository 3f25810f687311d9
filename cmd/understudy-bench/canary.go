package main

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/understudy-ml/understudy/pkg/onnxbuild"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// This file is the canary section: on one server with a canary at weight
// 0.5, the latency of requests whose key routes them to the canary against
// those the primary answers, and, with a candidate that fails on every
// request, what a fallback adds: the failed run, then the primary's.

const benchToken = "bench-admin-token"

// keyedClient is a loadClient that sends X-Understudy-Key: key.
func keyedClient(rawURL string, body []byte, key string) (*loadClient, error) {
	lc, err := newLoadClient(rawURL, body)
	if err != nil {
		return nil, err
	}
	head, rest, _ := bytes.Cut(lc.req, []byte("\r\n"))
	lc.req = slices.Concat(head, []byte("\r\nX-Understudy-Key: "+key), []byte("\r\n"), rest)
	return lc, nil
}

// keyFor returns a key that the canary answers at weight 0.5 when canary
// is set, else one the primary answers.
func keyFor(canary bool) string {
	for i := 0; ; i++ {
		k := fmt.Sprintf("bench-%d", i)
		if (understudy.KeyFraction(k) < 0.5) == canary {
			return k
		}
	}
}

// alwaysFails takes the model's input, [N, width], and reshapes it into
// rows of width+1, which no single row fills: every run fails.
func alwaysFails(width int) ([]byte, error) {
	m := &onnxbuild.Model{Graph: onnxbuild.Graph{
		Name:         "always_fails",
		Nodes:        []onnxbuild.Node{{OpType: "Reshape", Inputs: []string{"input", "shape"}, Outputs: []string{"y"}}},
		Inputs:       []onnxbuild.ValueInfo{{Name: "input", DType: onnxbuild.Float, Dims: []int64{-1, int64(width)}}},
		Outputs:      []onnxbuild.ValueInfo{{Name: "y", DType: onnxbuild.Float, Dims: []int64{-1, int64(width + 1)}}},
		Initializers: []onnxbuild.Tensor{onnxbuild.Int64Tensor("shape", []int64{2}, []int64{-1, int64(width + 1)})},
	}}
	return m.Marshal()
}

func configure(url, name, body string) error {
	req, _ := http.NewRequest("PUT", url+"/models/"+name, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+benchToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("PUT /models/%s: %d", name, resp.StatusCode)
	}
	return nil
}

// pairedKeys is pairedOpenLoop over one server: keyA's requests against
// keyB's, in alternating rounds at the same rate.
func pairedKeys(url string, body []byte, keyA, keyB string, rate float64, d time.Duration) (roundsA, roundsB [][]time.Duration, err error) {
	ca, err := keyedClient(url+"/predict", body, keyA)
	if err != nil {
		return nil, nil, err
	}
	defer ca.close()
	cb, err := keyedClient(url+"/predict", body, keyB)
	if err != nil {
		return nil, nil, err
	}
	defer cb.close()
	for i := range max(int(d/(2*latencySlice)), 2) {
		first, second := ca, cb
		if i%2 == 1 {
			first, second = cb, ca
		}
		r1, err1 := openLoop(first, rate, latencySlice)
		err3 := quiesce(url)
		r2, err2 := openLoop(second, rate, latencySlice)
		err4 := quiesce(url)
		if err = errors.Join(err1, err2, err3, err4); err != nil {
			return nil, nil, err
		}
		if i%2 == 1 {
			r1, r2 = r2, r1
		}
		roundsA, roundsB = append(roundsA, r1.lat), append(roundsB, r2.lat)
	}
	return roundsA, roundsB, nil
}

func benchCanary(m benchModel) error {
	shadows, err := shadowFiles(m)
	if err != nil {
		return err
	}
	fails, err := alwaysFails(len(m.row))
	if err != nil {
		return err
	}
	args := []string{"--admin-token", benchToken}
	srv, err := startServer(map[string][]byte{"primary": m.file, "candidate": shadows["shadow-a"], "failing": fails}, "primary", args...)
	if err != nil {
		return err
	}
	defer srv.stop()
	if err := configure(srv.url, "candidate", `{"mode": "canary", "weight": 0.5}`); err != nil {
		return err
	}
	// The failing shadow must not add a shadow run to the comparison.
	if err := configure(srv.url, "failing", `{"paused": true}`); err != nil {
		return err
	}
	keyC, keyP := keyFor(true), keyFor(false)
	maxRes, err := closedLoop(srv.url+"/predict", m.body, 4, *duration/rounds)
	if err != nil {
		return err
	}
	// A quarter of the maximum: what routing and the fallback cost, not
	// how the host queues near saturation.
	rate := maxRes.rate / 4
	fmt.Printf("== canary at weight 0.5: %s ==\n", m.name)
	canaryRounds, primaryRounds, err := pairedKeys(srv.url, m.body, keyC, keyP, rate, *p99Time)
	if err != nil {
		return err
	}
	// Now the failing model is the canary, the guard never stops it, and
	// every request routed to it falls back.
	for _, c := range []struct{ name, body string }{
		{"candidate", `{"mode": "shadow"}`},
		{"failing", `{"mode": "canary", "weight": 0.5, "max_error_rate": 1, "window": 1, "paused": false}`},
	} {
		if err := configure(srv.url, c.name, c.body); err != nil {
			return err
		}
	}
	fbRounds, fbPrimary, err := pairedKeys(srv.url, m.body, keyC, keyP, rate, *p99Time)
	if err != nil {
		return err
	}
	lc, lp := loadResult{lat: slices.Concat(canaryRounds...)}, loadResult{lat: slices.Concat(primaryRounds...)}
	lf, lq := loadResult{lat: slices.Concat(fbRounds...)}, loadResult{lat: slices.Concat(fbPrimary...)}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "at %.0f req/s\tp50\tp99\tp99 ratio\t\n", rate)
	fmt.Fprintf(tw, "primary answers\t%v\t%v\t\t\n", lp.p(50), lp.p(99))
	fmt.Fprintf(tw, "canary answers\t%v\t%v\t%.2f\t\n", lc.p(50), lc.p(99), float64(lc.p(99))/float64(lp.p(99)))
	fmt.Fprintf(tw, "primary answers (failing canary on)\t%v\t%v\t\t\n", lq.p(50), lq.p(99))
	fmt.Fprintf(tw, "fallbacks\t%v\t%v\t%.2f\t\n", lf.p(50), lf.p(99), float64(lf.p(99))/float64(lq.p(99)))
	tw.Flush()
	// The interval is of the second side's quantile over the first's.
	lo, hi := quantileRatioInterval(primaryRounds, canaryRounds, 0.99, latencyBlock)
	flo, fhi := quantileRatioInterval(fbPrimary, fbRounds, 0.99, latencyBlock)
	fmt.Printf("p99 ratio 95%% intervals, rounds resampled: canary/primary %.2f–%.2f, fallback/primary %.2f–%.2f\n", lo, hi, flo, fhi)
	fmt.Printf("a fallback costs %v at p50 and %v at p99 over a request the primary answers (a failed candidate run, then the primary's)\n\n",
		lf.p(50)-lq.p(50), lf.p(99)-lq.p(99))
	return nil
}
