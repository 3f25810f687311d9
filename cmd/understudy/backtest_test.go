package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/understudy-ml/understudy/internal/pgtest"
	"github.com/understudy-ml/understudy/pkg/onnxbuild"
)

// runCLI runs understudy with args in-process and returns its exit status
// as main would set it, with what it printed.
func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(context.Background(), args, &out, &errOut)
	var ee *exitError
	switch {
	case err == nil:
		code = 0
	case errors.As(err, &ee):
		code = ee.code
		errOut.WriteString(err.Error())
	default:
		code = 1
		errOut.WriteString(err.Error())
	}
	return code, out.String(), errOut.String()
}

// Ensure understudy backtest gates on the verdict: 0 for a candidate that
// would be ready on the stored traffic, 1 for one that would not, 2 for
// bad usage or input, each with a message that says why; and that it
// stores nothing unless told to, even while a server writes the database.
func TestBacktestCommand(t *testing.T) {
	dir := t.TempDir()
	demoModel(t, "iris-v1", dir, "iris-v1")
	db := filepath.Join(t.TempDir(), "u.db")
	m := startServerWith(t, dir, nil, "--primary", "iris-v1", "--db", db)
	defer m.Close()
	ids, _, _ := labelledHistory(t, m.URL(), 2)
	if err := m.store.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	cands := t.TempDir()
	same := filepath.Join(cands, "iris-same.onnx")
	data, err := os.ReadFile(filepath.Join(dir, "iris-v1.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(same, data, 0o644)
	// A random network over the same inputs and outputs: it disagrees
	// with the primary on most rows.
	random := filepath.Join(cands, "iris-random.onnx")
	if err := onnxbuild.RandomMLP(7, 4, []int{8}, 3).Model("random").WriteFile(random); err != nil {
		t.Fatal(err)
	}
	// Another input name: the primary's requests do not fit it.
	other := filepath.Join(cands, "other.onnx")
	if err := onnxbuild.Slow(2).WriteFile(other); err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(cands, "garbage.onnx")
	os.WriteFile(garbage, []byte("not a model"), 0o644)
	emptyDB := filepath.Join(t.TempDir(), "empty.db")
	openStore(t, emptyDB).Close()

	base := []string{"backtest", "--db", db, "--ort-lib", ortLib()}
	for _, tt := range []struct {
		name string
		args []string
		code int
		want string // in stdout for 0 and 1, in stderr for 2
	}{
		{"ready", []string{same}, 0, "Verdict: READY"},
		{"not ready", []string{random}, 1, "Verdict: NOT READY"},
		{"json", []string{"--json", same}, 0, `"ready": true`},
		{"no candidate", nil, 2, "want one candidate model file"},
		{"missing file", []string{filepath.Join(cands, "nope.onnx")}, 2, "read the candidate"},
		{"unreadable model", []string{garbage}, 2, "load the candidate"},
		{"incompatible", []string{other}, 2, "cannot take the primary's inputs"},
		{"unknown primary", []string{"--primary", "nosuch", same}, 2, `no model named "nosuch"`},
		{"bad rows", []string{"--rows", "0", same}, 2, "--rows 0"},
		{"bad timeout", []string{"--timeout", "0s", same}, 2, "--timeout 0s"},
		{"empty window", []string{"--window", "1ns", same}, 2, "no stored requests of iris-v1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, append(base, tt.args...)...)
			where := stdout
			if tt.code == 2 {
				where = stderr
			}
			if code != tt.code || !strings.Contains(where, tt.want) {
				t.Errorf("exit %d, want %d with %q\nstdout: %s\nstderr: %s", code, tt.code, tt.want, stdout, stderr)
			}
		})
	}
	if code, _, stderr := runCLI(t, "backtest", "--db", emptyDB, "--ort-lib", ortLib(), same); code != 2 || !strings.Contains(stderr, "no history") {
		t.Errorf("empty database: exit %d, %s; want 2 saying there is no history", code, stderr)
	}

	// The JSON's figures: every stored request ran, and agreement with
	// the very same model is total.
	_, stdout, _ := runCLI(t, append(base, "--json", same)...)
	var res backtestResult
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatal(err)
	}
	if res.Ran != len(ids) || res.Report.Classification == nil || res.Report.Classification.Agreement != 1 ||
		res.Report.Accuracy == nil || res.Report.Accuracy.Labelled != int64(len(ids)) {
		t.Errorf("ran %d of %d; classification %+v, accuracy %+v", res.Ran, len(ids), res.Report.Classification, res.Report.Accuracy)
	}

	// Nothing was stored without --store; with it, the pairs are the
	// server's to report.
	if sr := shadowReport(t, m.URL(), "iris-same", ""); sr != nil {
		t.Errorf("a backtest without --store left pairs: %+v", sr.Traffic)
	}
	if code, _, stderr := runCLI(t, append(base, "--store", same)...); code != 0 {
		t.Fatalf("--store: exit %d: %s", code, stderr)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		sr := shadowReport(t, m.URL(), "iris-same", "")
		if sr != nil && sr.Traffic.Backtest == int64(len(ids)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("--store: the server's report shows %+v", sr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Ensure understudy backtest reads a PostgreSQL store that a running
// server writes, with the same verdicts and the labels joined, and stores
// its pairs there with --store.
func TestBacktestCommandPostgres(t *testing.T) {
	db := pgtest.URL(t)
	dir := t.TempDir()
	demoModel(t, "iris-v1", dir, "iris-v1")
	m := startServerWith(t, dir, nil, "--primary", "iris-v1", "--db", db)
	defer m.Close()
	ids, _, _ := labelledHistory(t, m.URL(), 1)
	if err := m.store.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	cands := t.TempDir()
	same := filepath.Join(cands, "iris-same.onnx")
	copyModel(t, filepath.Join(dir, "iris-v1.onnx"), same)
	random := filepath.Join(cands, "iris-random.onnx")
	if err := onnxbuild.RandomMLP(7, 4, []int{8}, 3).Model("random").WriteFile(random); err != nil {
		t.Fatal(err)
	}
	base := []string{"backtest", "--db", db, "--ort-lib", ortLib()}
	if code, _, stderr := runCLI(t, append(base, random)...); code != 1 {
		t.Errorf("random candidate: exit %d, want 1: %s", code, stderr)
	}
	code, stdout, stderr := runCLI(t, append(base, "--json", "--store", same)...)
	if code != 0 {
		t.Fatalf("same model: exit %d, want 0: %s", code, stderr)
	}
	var res backtestResult
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatal(err)
	}
	if res.Ran != len(ids) || res.Report.Accuracy == nil || res.Report.Accuracy.Labelled != int64(len(ids)) {
		t.Errorf("ran %d of %d, accuracy %+v", res.Ran, len(ids), res.Report.Accuracy)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if sr := shadowReport(t, m.URL(), "iris-same", ""); sr != nil && sr.Traffic.Backtest == int64(len(ids)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the stored backtest pairs do not show in the server's report")
		}
	}
}
