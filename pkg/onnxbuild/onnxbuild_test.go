package onnxbuild_test

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/understudy-ml/understudy/pkg/onnxbuild"
)

// These tests check what Marshal refuses and how WriteFile writes; the
// encoding's tests are in encode_test.go, the ready-made models' in
// models_test.go.

// Ensure Marshal refuses graphs that ONNX Runtime would reject, naming the culprit.
func TestMarshalErrors(t *testing.T) {
	ok := func() *onnxbuild.Model { return onnxbuild.Identity(onnxbuild.Float, []int64{-1}) }
	tests := []struct {
		name   string
		mutate func(m *onnxbuild.Model)
		want   string
	}{
		{"no graph name", func(m *onnxbuild.Model) { m.Graph.Name = "" }, "no name"},
		{"undefined input", func(m *onnxbuild.Model) { m.Graph.Nodes[0].Inputs = []string{"nope"} }, `reads "nope"`},
		{"output never computed", func(m *onnxbuild.Model) { m.Graph.Outputs[0].Name = "z" }, `output "z" is never computed`},
		{"no outputs", func(m *onnxbuild.Model) { m.Graph.Outputs = nil }, "no outputs"},
		{"value defined twice", func(m *onnxbuild.Model) { m.Graph.Nodes[0].Outputs = []string{"x"} }, `"x" defined twice`},
		{"no op type", func(m *onnxbuild.Model) { m.Graph.Nodes[0].OpType = "" }, "no op type"},
		{"bad dtype", func(m *onnxbuild.Model) { m.Graph.Inputs[0].DType = 99 }, "unsupported dtype 99"},
		{"bad dim", func(m *onnxbuild.Model) { m.Graph.Inputs[0].Dims = []int64{-2} }, "dim -2"},
		{"scalar with dims", func(m *onnxbuild.Model) { m.Graph.Inputs[0].Scalar = true }, "scalar with dims"},
		{"tensor size mismatch", func(m *onnxbuild.Model) {
			m.Graph.Initializers = []onnxbuild.Tensor{onnxbuild.FloatTensor("w", []int64{2, 2}, []float32{1, 2, 3})}
		}, "3 elements for dims [2 2], want 4"},
		{"wrong data field", func(m *onnxbuild.Model) {
			m.Graph.Initializers = []onnxbuild.Tensor{{Name: "w", DType: onnxbuild.Int64, Floats: []float32{1}}}
		}, "Floats cannot hold int64"},
		{"two data fields", func(m *onnxbuild.Model) {
			m.Graph.Initializers = []onnxbuild.Tensor{{Name: "w", DType: onnxbuild.Float, Floats: []float32{1}, Raw: []byte{0, 0, 0, 0}}}
		}, "both Floats and Raw"},
		{"ragged raw", func(m *onnxbuild.Model) {
			m.Graph.Initializers = []onnxbuild.Tensor{{Name: "w", DType: onnxbuild.Float, Raw: []byte{1, 2}}}
		}, "not a whole number"},
		{"unnamed attribute", func(m *onnxbuild.Model) { m.Graph.Nodes[0].Attrs = []onnxbuild.Attr{onnxbuild.AttrInt("", 1)} }, "empty name"},
		{"subgraph reads unknown value", func(m *onnxbuild.Model) {
			m.Graph.Nodes[0].Attrs = []onnxbuild.Attr{onnxbuild.AttrGraph("body", onnxbuild.Graph{
				Name:    "body",
				Nodes:   []onnxbuild.Node{{OpType: "Identity", Inputs: []string{"ghost"}, Outputs: []string{"z"}}},
				Outputs: []onnxbuild.ValueInfo{{Name: "z", DType: onnxbuild.Float}},
			})}
		}, `reads "ghost"`},
		{"bad opset", func(m *onnxbuild.Model) { m.Opsets = map[string]int64{"": 0} }, "version 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := ok()
			tt.mutate(m)
			_, err := m.Marshal()
			if err == nil {
				t.Fatalf("Marshal succeeded, want error containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

// Ensure a subgraph may read values of its enclosing graph, as If and Loop bodies do, and an
// input may shadow an initializer to give it a default.
func TestMarshalScopes(t *testing.T) {
	m := onnxbuild.Identity(onnxbuild.Float, []int64{-1})
	m.Graph.Nodes[0].Attrs = []onnxbuild.Attr{onnxbuild.AttrGraph("body", onnxbuild.Graph{
		Name:    "body",
		Nodes:   []onnxbuild.Node{{OpType: "Identity", Inputs: []string{"x"}, Outputs: []string{"z"}}},
		Outputs: []onnxbuild.ValueInfo{{Name: "z", DType: onnxbuild.Float}},
	})}
	m.Graph.Initializers = []onnxbuild.Tensor{onnxbuild.FloatTensor("x", []int64{1}, []float32{0})}
	if _, err := m.Marshal(); err != nil {
		t.Fatalf("Marshal: %v", err)
	}
}

// Ensure WriteFile leaves exactly the marshalled bytes and no temporary file behind.
func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "m.onnx")
	m := onnxbuild.Scalar()
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := m.WriteFile(path); err != nil {
		t.Fatalf("WriteFile: %v", err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := m.Marshal()
	if !bytes.Equal(got, want) {
		t.Errorf("file holds %d bytes, want the %d marshalled bytes", len(got), len(want))
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := []string{"m.onnx"}; !slices.Equal(names, want) {
		t.Errorf("directory holds %v, want %v", names, want)
	}

	if err := m.WriteFile(filepath.Join(dir, "missing", "m.onnx")); err == nil {
		t.Errorf("WriteFile into a missing directory succeeded")
	}
	bad := onnxbuild.Scalar()
	bad.Graph.Outputs = nil
	if err := bad.WriteFile(filepath.Join(dir, "bad.onnx")); err == nil {
		t.Errorf("WriteFile of an invalid model succeeded")
	}
	if _, err := os.Stat(filepath.Join(dir, "bad.onnx")); !os.IsNotExist(err) {
		t.Errorf("invalid model left a file behind: %v", err)
	}
}
