package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var outputs = []string{"models/iris-v1.onnx", "models/iris-v2.onnx", "testdata/iris-holdout.csv", "testdata/iris-holdout.jsonl"}

func generate(tb testing.TB) (dir, stdout string) {
	tb.Helper()
	dir = tb.TempDir()
	var out bytes.Buffer
	args := []string{
		"-iris", "../../testdata/iris.csv",
		"-models", filepath.Join(dir, "models"),
		"-testdata", filepath.Join(dir, "testdata"),
	}
	if err := run(args, &out); err != nil {
		tb.Fatalf("run: %v", err)
	}
	return dir, out.String()
}

// Ensure two runs write identical bytes, and that the files committed in the repository are
// the ones mkdemo writes now.
func TestDeterministic(t *testing.T) {
	a, stdout := generate(t)
	b, _ := generate(t)
	for _, name := range outputs {
		got, err := os.ReadFile(filepath.Join(a, name))
		if err != nil {
			t.Fatal(err)
		}
		again, err := os.ReadFile(filepath.Join(b, name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, again) {
			t.Errorf("%s differs between two runs", name)
		}
		committed, err := os.ReadFile(filepath.Join("../..", name))
		if err != nil {
			t.Errorf("committed %s: %v (run `go run ./cmd/mkdemo` from the repository root)", name, err)
			continue
		}
		if !bytes.Equal(got, committed) {
			t.Errorf("committed %s is stale: run `go run ./cmd/mkdemo` from the repository root", name)
		}
	}
	for _, want := range []string{"held-out accuracy 0.778", "held-out accuracy 0.978", "disagree on 0.200"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output %q does not mention %q", stdout, want)
		}
	}
}

// Ensure a missing data file is reported rather than producing empty models.
func TestMissingData(t *testing.T) {
	dir := t.TempDir()
	err := run([]string{"-iris", filepath.Join(dir, "nope.csv"), "-models", dir, "-testdata", dir}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "nope.csv") {
		t.Errorf("error %v, want it to name the missing file", err)
	}
}
