package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/understudy-ml/understudy/pkg/onnxbuild"
)

// Ensure that with --max-batch, concurrent requests over HTTP are merged into
// shared runs, and that each client still gets, and the store still keeps,
// its own row's answer: every response and every stored comparison with a
// shadow is checked against both networks evaluated in Go.
func TestMergedRequestsOverHTTP(t *testing.T) {
	primary := onnxbuild.RandomMLP(11, 64, []int{1024, 1024}, 6)
	shadow := onnxbuild.RandomMLP(12, 64, []int{256}, 6)
	dir := t.TempDir()
	writeModel(t, dir, "a", primary.Model("a"), time.Time{})
	writeModel(t, dir, "b", shadow.Model("b"), time.Time{})
	dbPath := filepath.Join(t.TempDir(), "batch.db")
	m := startServerWith(t, dir, nil, "--primary", "a", "--db", dbPath, "--max-batch", "8",
		"--shed-when-busy=false", "--shadow-queue", "100000")

	const clients, each = 16, 40
	rows := make([][]float32, clients*each)
	r := rand.New(rand.NewPCG(5, 5))
	for i := range rows {
		rows[i] = make([]float32, 64)
		for j := range rows[i] {
			rows[i][j] = float32(r.NormFloat64())
		}
	}
	wantLabels, wantProbs := primary.Predict(rows)
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := c * each; i < (c+1)*each; i++ {
				resp := testRequest(t, "POST", m.URL()+"/predict", rowBody(fmt.Sprintf("r-%d", i), rows[i]))
				if resp.Status != 200 {
					t.Errorf("request %d: %d %s", i, resp.Status, resp.Body)
					return
				}
				var got struct {
					Outputs struct {
						Label         []int64     `json:"label"`
						Probabilities [][]float64 `json:"probabilities"`
					} `json:"outputs"`
				}
				if err := json.Unmarshal(resp.Body, &got); err != nil {
					t.Error(err)
					return
				}
				if len(got.Outputs.Label) != 1 || got.Outputs.Label[0] != wantLabels[i] || len(got.Outputs.Probabilities) != 1 {
					t.Errorf("request %d: %s, want label %d", i, resp.Body, wantLabels[i])
					return
				}
				for k, p := range got.Outputs.Probabilities[0] {
					if math.Abs(p-float64(wantProbs[i][k])) > 1e-5 {
						t.Errorf("request %d: probability %d is %v, want %v", i, k, p, wantProbs[i][k])
						return
					}
				}
			}
		}()
	}
	wg.Wait()

	ms := listModels(t, m.URL())
	a := find(ms, "a", "primary")
	if a == nil || a.Batching == nil {
		t.Fatalf("models %+v: want a primary with batching described", ms)
	}
	t.Logf("batching: %+v", *a.Batching)
	if a.Batching.MaxRows != 8 || a.Batching.MergedRuns == 0 || a.Batching.MergedRequests < 2*a.Batching.MergedRuns || a.Batching.Off != "" {
		t.Errorf("batching %+v: 16 clients on a model this slow should have been merged", *a.Batching)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}

	db := openStore(t, dbPath)
	shadowLabels, shadowProbs := shadow.Predict(rows)
	for i := range rows {
		id := fmt.Sprintf("r-%d", i)
		res, err := db.ShadowResults(context.Background(), id)
		if err != nil || len(res) != 1 || res[0].Status != "ok" {
			t.Fatalf("%s: shadow results %+v, %v; want one, ok", id, res, err)
		}
		c := res[0].Compare
		var maxDiff float64
		for k := range wantProbs[i] {
			maxDiff = math.Max(maxDiff, math.Abs(float64(wantProbs[i][k]-shadowProbs[i][k])))
		}
		if *c.PrimaryClass != wantLabels[i] || *c.ShadowClass != shadowLabels[i] || math.Abs(*c.MaxAbsDiff-maxDiff) > 1e-5 {
			t.Fatalf("%s: stored classes %d/%d, max |Δ| %v; want %d/%d, %v", id, *c.PrimaryClass, *c.ShadowClass, *c.MaxAbsDiff, wantLabels[i], shadowLabels[i], maxDiff)
		}
	}
}

// Ensure a primary whose signature cannot be merged says why in /models and
// still answers.
func TestUnmergeablePrimarySaysWhy(t *testing.T) {
	m := startServer(t, modelsDir(t), "--max-batch", "8")
	multi := find(listModels(t, m.URL()), "multi", "primary")
	if multi == nil || multi.Batching == nil || !strings.Contains(multi.Batching.Off, `output "total"`) {
		t.Fatalf("multi: %+v; want batching off because of its scalar output \"total\"", multi)
	}
	r := testRequest(t, "POST", m.URL()+"/predict", []byte(`{"inputs": {"a": [[1, 2, 3]], "b": [[7, -8]]}}`))
	if r.Status != 200 {
		t.Fatalf("predict: %d %s", r.Status, r.Body)
	}
}

// Ensure --max-batch and --batch-runs refuse negative numbers with a
// message naming the flag.
func TestMaxBatchFlags(t *testing.T) {
	for _, flag := range []string{"--max-batch", "--batch-runs"} {
		m := NewMain()
		err := m.ParseFlags([]string{flag, "-1"}, nil)
		if err == nil || !strings.Contains(err.Error(), flag) {
			t.Errorf("%s -1: got %v, want an error naming %s", flag, err, flag)
		}
	}
}
