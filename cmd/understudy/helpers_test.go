package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/rs/zerolog"

	"github.com/understudy-ml/understudy/pkg/demo"
	"github.com/understudy-ml/understudy/pkg/sqlite"
)

// This file holds the helpers that the tests of this package share: the demo
// models in a fresh directory, a server started in-process with adjusted
// options, the demo's held-out rows as request bodies, the store opened for
// reading, a buffer safe for concurrent writes, GET /models and the admin
// API. More are in main_test.go (startServer, testRequest, ortLib) and
// oip_helpers_test.go.

// demoDir copies the shipped demo models into a fresh directory.
func demoDir(tb testing.TB) string {
	tb.Helper()
	dir := tb.TempDir()
	for _, name := range []string{"iris-v1", "iris-v2"} {
		data, err := os.ReadFile(filepath.Join("..", "..", "models", name+".onnx"))
		if err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name+".onnx"), data, 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	return dir
}

// startServerWith is startServer with a chance to adjust Main before Run.
func startServerWith(tb testing.TB, dir string, adjust func(*Main), args ...string) *Main {
	tb.Helper()
	m := NewMain()
	all := append([]string{"--addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0", "--models-dir", dir, "--db", filepath.Join(tb.TempDir(), "u.db"), "--ort-lib", ortLib()}, args...)
	if err := m.ParseFlags(all, io.Discard); err != nil {
		tb.Fatal(err)
	}
	m.Log = zerolog.New(zerolog.NewTestWriter(tb)).Level(zerolog.WarnLevel)
	if adjust != nil {
		adjust(m)
	}
	if err := m.Run(context.Background()); err != nil {
		m.Close()
		tb.Fatal(err)
	}
	return m
}

// openStore opens a database file the way the server does, for reading
// what it stored.
func openStore(tb testing.TB, path string) *sqlite.DB {
	tb.Helper()
	db, err := sqlite.Open(path, sqlite.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

func holdout(tb testing.TB) demo.Demo {
	tb.Helper()
	ds, err := demo.LoadIris(filepath.Join("..", "..", "testdata", "iris.csv"))
	if err != nil {
		tb.Fatal(err)
	}
	return demo.Build(ds)
}

func rowBody(id string, x []float32) []byte {
	b, _ := json.Marshal(map[string]any{"id": id, "input": [][]float32{x}})
	return b
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

const adminToken = "s3cret-token"

type modelView struct {
	Name     string   `json:"name"`
	Version  string   `json:"version"`
	Role     string   `json:"role"`
	Error    string   `json:"error"`
	Warnings []string `json:"warnings"`
	Sampling *float64 `json:"sampling"`
	Timeout  int64    `json:"timeout_ms"`
	Paused   bool     `json:"paused"`
	LoadMS   float64  `json:"load_ms"`
	Batching *struct {
		MaxRows        int    `json:"max_rows"`
		MergedRuns     int64  `json:"merged_runs"`
		MergedRequests int64  `json:"merged_requests"`
		Off            string `json:"off"`
	} `json:"batching"`
}

func listModels(tb testing.TB, url string) []modelView {
	tb.Helper()
	r := testRequest(tb, "GET", url+"/models", nil)
	var v struct{ Models []modelView }
	if err := json.Unmarshal(r.Body, &v); err != nil {
		tb.Fatal(err)
	}
	return v.Models
}

func find(ms []modelView, name, role string) *modelView {
	for i := range ms {
		if ms[i].Name == name && (role == "" || ms[i].Role == role) {
			return &ms[i]
		}
	}
	return nil
}

func admin(tb testing.TB, method, url, token string, body []byte) response {
	tb.Helper()
	req, _ := http.NewRequest(method, url, bytes.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return response{resp.StatusCode, resp.Header, b.Bytes()}
}
