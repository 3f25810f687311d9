package registry_test

import (
	"strings"
	"testing"

	"github.com/understudy-ml/understudy/pkg/registry"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

func sig(inputs ...understudy.TensorInfo) understudy.Signature {
	return understudy.Signature{Inputs: inputs}
}

func in(name string, dt understudy.DType, dims ...int64) understudy.TensorInfo {
	return understudy.TensorInfo{Name: name, DType: dt, Dims: dims}
}

// Ensure a shadow is compatible exactly when it can take every request the
// primary can, and the reason names the problem otherwise.
func TestCompatible(t *testing.T) {
	primary := sig(in("x", understudy.Float32, -1, 4), in("ids", understudy.Int64, -1))
	tests := []struct {
		name   string
		shadow understudy.Signature
		want   string // "" = compatible
	}{
		{"same", primary, ""},
		{"subset of inputs", sig(in("x", understudy.Float32, -1, 4)), ""},
		{"dynamic where primary is fixed", sig(in("x", understudy.Float32, -1, -1)), ""},
		{"unknown input", sig(in("z", understudy.Float32, -1, 4)), `input "z" does not exist in the primary`},
		{"type", sig(in("x", understudy.Float64, -1, 4)), `input "x" is float64, the primary's is float32`},
		{"rank", sig(in("x", understudy.Float32, -1)), `shape [-1], the primary's has [-1,4]`},
		{"fixed where primary is dynamic", sig(in("x", understudy.Float32, 1, 4)), `shape [1,4]`},
		{"other fixed dim", sig(in("x", understudy.Float32, -1, 5)), `shape [-1,5]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := registry.Compatible(primary, tt.shadow)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("got %v, want compatible", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// Ensure only plain *.onnx files count as models, and names cannot leave
// the directory.
func TestModelName(t *testing.T) {
	tests := []struct {
		file, name string
		ok         bool
	}{
		{"iris-v1.onnx", "iris-v1", true},
		{"README.md", "", false},
		{".hidden.onnx", "", false},
		{"~lock.onnx", "", false},
		{"#autosave.onnx#", "", false},
		{"model.onnx.tmp", "", false},
		{".onnx", "", false},
	}
	for _, tt := range tests {
		name, ok := registry.ModelName(tt.file)
		if ok != tt.ok || (ok && name != tt.name) {
			t.Errorf("ModelName(%q) = %q, %v; want %q, %v", tt.file, name, ok, tt.name, tt.ok)
		}
	}
	for _, bad := range []string{"", ".", "..", "a/b", `a\b`, "a\x00b"} {
		if registry.ValidName(bad) {
			t.Errorf("ValidName(%q) = true", bad)
		}
	}
}
