package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/understudy-ml/understudy/pkg/onnxbuild"
	"github.com/understudy-ml/understudy/pkg/shadow"
	"github.com/understudy-ml/understudy/pkg/sqlite"
)

// Ensure each request yields a stored prediction and a stored shadow result
// whose comparison matches the two models evaluated independently in Go,
// and that labels attach to the stored prediction.
func TestShadowPairsStored(t *testing.T) {
	d := holdout(t)
	dbPath := filepath.Join(t.TempDir(), "pairs.db")
	// Every request must have its pair: no shedding, which on one core
	// drops a job whenever the next request is already in flight.
	m := startServerWith(t, demoDir(t), nil, "--primary", "iris-v1", "--db", dbPath, "--shed-when-busy=false")
	rows := d.Holdout.X32()
	for i, x := range rows {
		r := testRequest(t, "POST", m.URL()+"/predict", rowBody(fmt.Sprintf("h-%d", i), x))
		if r.Status != 200 {
			t.Fatalf("predict %d: %d %s", i, r.Status, r.Body)
		}
		fb := fmt.Sprintf(`{"id": "h-%d", "label": %d}`, i, d.Holdout.Y[i])
		if r := testRequest(t, "POST", m.URL()+"/feedback", []byte(fb)); r.Status != 200 {
			t.Fatalf("feedback %d: %d %s", i, r.Status, r.Body)
		}
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}

	db := openStore(t, dbPath)
	ctx := context.Background()
	v1Labels, v1Probs := d.V1.Predict(rows)
	v2Labels, v2Probs := d.V2.Predict(rows)
	disagree := 0
	for i := range rows {
		id := fmt.Sprintf("h-%d", i)
		p, err := db.Prediction(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if p.Label == nil || int(*p.Label) != d.Holdout.Y[i] || p.Model != "iris-v1" || p.Inputs == nil {
			t.Errorf("%s: stored prediction %+v, want label %d and inputs", id, p, d.Holdout.Y[i])
		}
		res, err := db.ShadowResults(ctx, id)
		if err != nil || len(res) != 1 {
			t.Fatalf("%s: shadow results %v, %v; want exactly one", id, res, err)
		}
		c := res[0].Compare
		if res[0].Shadow != "iris-v2" || res[0].Status != "ok" || c.Agreement == nil || c.PrimaryClass == nil {
			t.Fatalf("%s: shadow result %+v", id, res[0])
		}
		wantAgree := 0.0
		if v1Labels[i] == v2Labels[i] {
			wantAgree = 1
		} else {
			disagree++
		}
		if *c.Agreement != wantAgree || *c.PrimaryClass != v1Labels[i] || *c.ShadowClass != v2Labels[i] {
			t.Errorf("%s: agreement %v classes %d/%d, want %v %d/%d", id, *c.Agreement, *c.PrimaryClass, *c.ShadowClass, wantAgree, v1Labels[i], v2Labels[i])
		}
		// The first float output is "probabilities".
		var maxDiff float64
		for j := range v1Probs[i] {
			maxDiff = math.Max(maxDiff, math.Abs(float64(v1Probs[i][j]-v2Probs[i][j])))
		}
		if c.MaxAbsDiff == nil || math.Abs(*c.MaxAbsDiff-maxDiff) > 1e-5 {
			t.Errorf("%s: max |Δ| = %v, want %v", id, c.MaxAbsDiff, maxDiff)
		}
	}
	if disagree == 0 {
		t.Error("the demo models never disagreed; the comparison was not exercised")
	}
}

// failingModel fails at run time on every input: it reshapes [N,4] into
// [3], which no batch size allows.
func failingModel() *onnxbuild.Model {
	return &onnxbuild.Model{Graph: onnxbuild.Graph{
		Name:         "always_fails",
		Nodes:        []onnxbuild.Node{{OpType: "Reshape", Inputs: []string{"input", "shape"}, Outputs: []string{"y"}}},
		Inputs:       []onnxbuild.ValueInfo{{Name: "input", DType: onnxbuild.Float, Dims: []int64{-1, 4}}},
		Outputs:      []onnxbuild.ValueInfo{{Name: "y", DType: onnxbuild.Float, Dims: []int64{3}}},
		Initializers: []onnxbuild.Tensor{onnxbuild.Int64Tensor("shape", []int64{1}, []int64{3})},
	}}
}

// slowModel takes the demo's input and runs a long chain of matrix products.
func slowModel(steps int) *onnxbuild.Model {
	m := onnxbuild.Slow(steps)
	m.Graph.Inputs[0].Name = "input"
	m.Graph.Nodes[0].Inputs[0] = "input"
	return m
}

type answer struct {
	outputs string
	latency float64
	total   time.Duration
}

func sendRows(tb testing.TB, url string, first int, rows [][]float32) []answer {
	tb.Helper()
	out := make([]answer, len(rows))
	for i, x := range rows {
		start := time.Now()
		r := testRequest(tb, "POST", url+"/predict", rowBody(fmt.Sprintf("r-%d", first+i), x))
		if r.Status != 200 {
			tb.Fatalf("predict: %d %s", r.Status, r.Body)
		}
		var v struct {
			Outputs   json.RawMessage `json:"outputs"`
			LatencyUS float64         `json:"latency_us"`
		}
		json.Unmarshal(r.Body, &v)
		out[i] = answer{string(v.Outputs), v.LatencyUS, time.Since(start)}
	}
	return out
}

func medianLatency(as []answer) float64 {
	ls := make([]float64, len(as))
	for i, a := range as {
		ls[i] = a.latency
	}
	slices.Sort(ls)
	return ls[len(ls)/2]
}

// Ensure a shadow that runs far past its timeout and a shadow that fails on
// every input leave the primary's answers and latency unchanged, and are
// recorded as timeout and error.
func TestBadShadowsLeavePrimaryAlone(t *testing.T) {
	d := holdout(t)
	rows := d.Holdout.X32()
	base := t.TempDir()
	data, _ := os.ReadFile(filepath.Join("..", "..", "models", "iris-v1.onnx"))
	os.WriteFile(filepath.Join(base, "iris-v1.onnx"), data, 0o644)
	withBad := t.TempDir()
	os.WriteFile(filepath.Join(withBad, "iris-v1.onnx"), data, 0o644)
	writeModel(t, withBad, "slow", slowModel(2000), time.Time{})
	writeModel(t, withBad, "failing", failingModel(), time.Time{})

	dbPath := filepath.Join(t.TempDir(), "bad.db")
	a := startServerWith(t, base, nil, "--primary", "iris-v1")
	// Shed jobs are dropped, not backfilled: the accounting below is of
	// live runs.
	b := startServerWith(t, withBad, nil, "--primary", "iris-v1", "--db", dbPath, "--shadow-timeout", "3ms", "--shadow-workers", "1", "--admin-token", adminToken,
		"--backfill-backlog", "0")
	// The failing shadow gets a generous timeout of its own, so that a
	// loaded machine cannot turn its errors into timeouts.
	if r := admin(t, "PUT", b.URL()+"/models/failing", adminToken, []byte(`{"timeout_ms": 10000}`)); r.Status != 200 {
		t.Fatalf("settings: %d %s", r.Status, r.Body)
	}
	var got, want []answer
	// Interleave the two servers so both see the same machine noise.
	for i := 0; i < len(rows); i += 5 {
		chunk := rows[i:min(i+5, len(rows))]
		want = append(want, sendRows(t, a.URL(), i, chunk)...)
		got = append(got, sendRows(t, b.URL(), i, chunk)...)
	}
	for i := range got {
		if got[i].outputs != want[i].outputs {
			t.Errorf("row %d: answer with bad shadows %s, without %s", i, got[i].outputs, want[i].outputs)
		}
		if got[i].total > time.Second {
			t.Errorf("row %d took %v with bad shadows", i, got[i].total)
		}
	}
	// A loose bound: this is a shared 2-core machine. make bench measures
	// the p99 ratio properly.
	if mg, mw := medianLatency(got), medianLatency(want); mg > 3*mw+1000 {
		t.Errorf("median primary run %vµs with bad shadows, %vµs without", mg, mw)
	}
	a.Close()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	db := openStore(t, dbPath)
	statuses := map[string]map[string]int{}
	for i := range rows {
		res, err := db.ShadowResults(context.Background(), fmt.Sprintf("r-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res {
			if statuses[r.Shadow] == nil {
				statuses[r.Shadow] = map[string]int{}
			}
			statuses[r.Shadow][r.Status]++
		}
	}
	slow, failing := statuses["slow"], statuses["failing"]
	_, dropSlow, _ := db.Skips(context.Background(), "slow")
	_, dropFail, _ := db.Skips(context.Background(), "failing")
	// Every job is a timeout, an error or a counted drop (shadows shed load
	// while the primary is busy), and each kind did happen.
	if slow["timeout"]+int(dropSlow) != len(rows) || slow["ok"] != 0 || slow["timeout"] == 0 {
		t.Errorf("slow shadow: %v and %d dropped, want %d timeouts or drops", slow, dropSlow, len(rows))
	}
	if failing["error"]+int(dropFail) != len(rows) || failing["ok"] != 0 || failing["error"] == 0 {
		t.Errorf("failing shadow: %v and %d dropped, want %d errors or drops", failing, dropFail, len(rows))
	}
}

// Ensure every mirrored request yields exactly one stored result per
// sampled shadow or a counted drop, and the rest are counted as sampled out.
func TestMirrorAccounting(t *testing.T) {
	dbPath := filepath.Join(t.TempDir(), "acct.db")
	m := startServerWith(t, demoDir(t), nil, "--primary", "iris-v1", "--db", dbPath,
		"--shadow-sampling", "0.5", "--shadow-queue", "2", "--shadow-workers", "1", "--backfill-backlog", "0")
	const n = 400
	burst(t, m.URL(), "a", n, 8)
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	db := openStore(t, dbPath)
	sampled, results := 0, 0
	for i := range n {
		id := fmt.Sprintf("a-%d", i)
		res, err := db.ShadowResults(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if shadow.Sampled(id, "iris-v2", 0.5) {
			sampled++
		} else if len(res) > 0 {
			t.Errorf("%s was sampled out but has a result", id)
		}
		results += len(res)
	}
	sampledOut, dropped, err := db.Skips(context.Background(), "iris-v2")
	if err != nil {
		t.Fatal(err)
	}
	if results+int(dropped) != sampled || int(sampledOut) != n-sampled {
		t.Errorf("%d results + %d dropped, %d sampled out; want %d sampled and %d sampled out", results, dropped, sampledOut, sampled, n-sampled)
	}
	t.Logf("%d sampled: %d results, %d dropped", sampled, results, dropped)
}

// Ensure a database that cannot be written (full) never stops the primary:
// every request is answered, lost rows are counted, and the error is logged
// with rate limiting.
func TestFullStoreKeepsServing(t *testing.T) {
	var logs syncBuffer
	m := startServerWith(t, demoDir(t), func(m *Main) {
		m.StoreOptions = func(o *sqlite.Options) { o.MaxPageCount = 40 }
		m.Log = zerolog.New(&logs)
	}, "--primary", "iris-v1")
	defer m.Close()
	big := make([]float32, 0, 4000)
	for i := range 1000 {
		big = append(big, float32(i), 3, 1, 0.5)
	}
	for i := range 200 {
		b, _ := json.Marshal(map[string]any{"id": fmt.Sprintf("f-%d", i), "inputs": map[string]any{"input": map[string]any{"shape": []int{1000, 4}, "data": big}}})
		r := testRequest(t, "POST", m.URL()+"/predict", b)
		if r.Status != 200 {
			t.Fatalf("request %d: %d %s", i, r.Status, r.Body)
		}
	}
	m.store.Flush(context.Background())
	metrics := testRequest(t, "GET", m.URL()+"/metrics", nil)
	lost := regexp.MustCompile(`understudy_store_rows_lost_total\{table="predictions"\} (\d+)`).FindSubmatch(metrics.Body)
	if lost == nil {
		t.Fatalf("no lost-rows metric in %s", metrics.Body)
	}
	if n, _ := strconv.Atoi(string(lost[1])); n == 0 {
		t.Errorf("no predictions counted as lost with a full database")
	}
	full := strings.Count(logs.String(), "full")
	if full == 0 || full > 3 {
		t.Errorf("the full-database error was logged %d times, want at least once and rate limited", full)
	}
}
