package main

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/understudy-ml/understudy/pkg/onnxbuild"
)

// This file holds the canary tests' helpers: /models' canary view, keyed
// requests, the report's canary figures, stored rows by who answered, and
// the model that fails for some row counts.

type canaryView struct {
	Mode         string  `json:"mode"`
	Weight       float64 `json:"weight"`
	MaxErrorRate float64 `json:"max_error_rate"`
	Window       int     `json:"window"`
	Stopped      string  `json:"stopped"`
	Routed       int64   `json:"routed"`
	Answered     int64   `json:"answered"`
	Fallbacks    int64   `json:"fallbacks"`
	Share        float64 `json:"answered_share"`
}

func canaryOf(tb testing.TB, url, name string) *canaryView {
	tb.Helper()
	r := testRequest(tb, "GET", url+"/models", nil)
	var v struct {
		Models []struct {
			Name   string
			Role   string
			Canary *canaryView
		}
	}
	if err := json.Unmarshal(r.Body, &v); err != nil {
		tb.Fatal(err)
	}
	for _, m := range v.Models {
		if m.Name == name {
			return m.Canary
		}
	}
	return nil
}

// keyed posts body to /predict with a routing key and returns who
// answered (X-Understudy-Model) and the status.
func keyed(tb testing.TB, url, key string, body []byte) (model string, status int, respBody []byte) {
	tb.Helper()
	req, _ := http.NewRequest("POST", url+"/predict", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("X-Understudy-Key", key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.Header.Get("X-Understudy-Model"), resp.StatusCode, b
}

type canaryReport struct {
	Mode          string  `json:"mode"`
	Weight        float64 `json:"weight"`
	Stopped       string  `json:"stopped"`
	Answered      int64   `json:"answered"`
	Fallbacks     int64   `json:"fallbacks"`
	AnsweredShare float64 `json:"answered_share"`
	PrimaryShare  float64 `json:"primary_share"`
	Stops         int     `json:"stops"`
}

// reportCanary polls the report's JSON until its canary figures for name
// equal want's counts (rows are committed in batches), and returns them
// with the window's request count.
func reportCanary(tb testing.TB, url, name string, answered, fallbacks int64, requests int64) canaryReport {
	tb.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		r := testRequest(tb, "GET", url+"/api/report?window=1h", nil)
		var v struct {
			Requests int64 `json:"requests"`
			Shadows  []struct {
				Name   string        `json:"name"`
				Canary *canaryReport `json:"canary"`
			} `json:"shadows"`
		}
		if err := json.Unmarshal(r.Body, &v); err != nil {
			tb.Fatalf("report: %d %s", r.Status, r.Body)
		}
		var got *canaryReport
		for _, s := range v.Shadows {
			if s.Name == name && s.Canary != nil {
				got = s.Canary
			}
		}
		if got != nil && got.Answered == answered && got.Fallbacks == fallbacks && v.Requests == requests {
			return *got
		}
		if time.Now().After(deadline) {
			tb.Fatalf("report: requests %d canary %+v; want %d requests, %d answered, %d fallbacks", v.Requests, got, requests, answered, fallbacks)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func mustConfigure(tb testing.TB, url, name, body string) {
	tb.Helper()
	if r := admin(tb, "PUT", url+"/models/"+name, adminToken, []byte(body)); r.Status != 200 {
		tb.Fatalf("PUT /models/%s %s: %d %s", name, body, r.Status, r.Body)
	}
}

func servedBy(tb testing.TB, dbPath, query string, args ...any) map[string]int {
	tb.Helper()
	db, err := sql.Open("sqlite3", "file:"+dbPath+"?_query_only=1")
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(query, args...)
	if err != nil {
		tb.Fatal(err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var k string
		var n int
		if err := rows.Scan(&k, &n); err != nil {
			tb.Fatal(err)
		}
		out[k] = n
	}
	return out
}

// flakyModel fails at run time for some row counts: it reshapes [N,4] into
// [3,-1], which works only when N is a multiple of 3.
func flakyModel() *onnxbuild.Model {
	return &onnxbuild.Model{Graph: onnxbuild.Graph{
		Name:         "flaky",
		Nodes:        []onnxbuild.Node{{OpType: "Reshape", Inputs: []string{"input", "shape"}, Outputs: []string{"y"}}},
		Inputs:       []onnxbuild.ValueInfo{{Name: "input", DType: onnxbuild.Float, Dims: []int64{-1, 4}}},
		Outputs:      []onnxbuild.ValueInfo{{Name: "y", DType: onnxbuild.Float, Dims: []int64{3, -1}}},
		Initializers: []onnxbuild.Tensor{onnxbuild.Int64Tensor("shape", []int64{2}, []int64{3, -1})},
	}}
}

func findVersion(tb testing.TB, url, name string) string {
	tb.Helper()
	if mv := find(listModels(tb, url), name, ""); mv != nil {
		return mv.Version
	}
	tb.Fatalf("no model %s", name)
	return ""
}

func rowsBody(n int) []byte {
	x := make([][]float32, n)
	for i := range x {
		x[i] = []float32{5.1, 3.5, 1.4, 0.2}
	}
	b, _ := json.Marshal(map[string]any{"input": x})
	return b
}
