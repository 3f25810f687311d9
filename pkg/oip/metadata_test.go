package oip_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/understudy-ml/understudy/pkg/oip"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// loaded builds the models a server might hold: "m" version v2 as the
// primary, an older "m" v1 loaded later as a shadow, a shadow "s", and "f"
// that failed to load. v1 is listed after v2 so that the versions must be
// sorted, and was loaded later so that the primary must win over the newest.
func loaded() []understudy.ModelInfo {
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	sig := func(cols int64) *understudy.Signature {
		return &understudy.Signature{
			Inputs:  []understudy.TensorInfo{{Name: "x", DType: understudy.Float32, Dims: []int64{-1, cols}}},
			Outputs: []understudy.TensorInfo{{Name: "score", DType: understudy.Float32}}, // rank 0, Dims nil
		}
	}
	return []understudy.ModelInfo{
		{Name: "m", Version: "v2", Role: understudy.RolePrimary, Signature: sig(4), LoadedAt: t0},
		{Name: "s", Version: "s1", Role: understudy.RoleShadow, Signature: sig(2), LoadedAt: t0},
		{Name: "f", Role: understudy.RoleFailed, Error: "bad file"},
		{Name: "m", Version: "v1", Role: understudy.RoleShadow, Signature: sig(3), LoadedAt: t0.Add(time.Hour)},
	}
}

// Ensure model metadata describes the version asked for, or the primary's
// with none asked for, lists every loaded version sorted, and writes a
// rank-0 shape as [] rather than null.
func TestDescribe(t *testing.T) {
	scalar := []oip.TensorMetadata{{Name: "score", Datatype: "FP32", Shape: []int64{}}}
	tests := []struct {
		name, model, version string
		want                 oip.ModelMetadata
	}{
		{"primary by default", "m", "", oip.ModelMetadata{
			Name: "m", Versions: []string{"v1", "v2"}, Platform: "onnxruntime_onnx",
			Inputs:     []oip.TensorMetadata{{Name: "x", Datatype: "FP32", Shape: []int64{-1, 4}}},
			Outputs:    scalar,
			Parameters: map[string]any{"role": "primary", "version": "v2"},
		}},
		{"older version", "m", "v1", oip.ModelMetadata{
			Name: "m", Versions: []string{"v1", "v2"}, Platform: "onnxruntime_onnx",
			Inputs:     []oip.TensorMetadata{{Name: "x", Datatype: "FP32", Shape: []int64{-1, 3}}},
			Outputs:    scalar,
			Parameters: map[string]any{"role": "shadow", "version": "v1"},
		}},
		{"shadow", "s", "", oip.ModelMetadata{
			Name: "s", Versions: []string{"s1"}, Platform: "onnxruntime_onnx",
			Inputs:     []oip.TensorMetadata{{Name: "x", Datatype: "FP32", Shape: []int64{-1, 2}}},
			Outputs:    scalar,
			Parameters: map[string]any{"role": "shadow", "version": "s1"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := oip.Describe(loaded(), tt.model, tt.version)
			if err != nil {
				t.Fatalf("Describe: %v", err)
			}
			if !reflect.DeepEqual(*got, tt.want) {
				t.Errorf("Describe(%q, %q) = %+v, want %+v", tt.model, tt.version, *got, tt.want)
			}
		})
	}
	t.Run("json", func(t *testing.T) {
		md, err := oip.Describe(loaded(), "m", "")
		if err != nil {
			t.Fatalf("Describe: %v", err)
		}
		got, err := json.Marshal(md)
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		want := `{"name":"m","versions":["v1","v2"],"platform":"onnxruntime_onnx",` +
			`"inputs":[{"name":"x","datatype":"FP32","shape":[-1,4]}],` +
			`"outputs":[{"name":"score","datatype":"FP32","shape":[]}],` +
			`"parameters":{"role":"primary","version":"v2"}}`
		if string(got) != want {
			t.Errorf("got %s, want %s", got, want)
		}
	})
}

// Ensure that with no primary under a name and no version asked for, the
// newest loaded version is described, wherever it is listed.
func TestDescribeNewestWithoutPrimary(t *testing.T) {
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	sig := &understudy.Signature{}
	models := []understudy.ModelInfo{
		{Name: "n", Version: "n1", Role: understudy.RoleShadow, Signature: sig, LoadedAt: t0},
		{Name: "n", Version: "n3", Role: understudy.RoleShadow, Signature: sig, LoadedAt: t0.Add(2 * time.Hour)},
		{Name: "n", Version: "n2", Role: understudy.RoleShadow, Signature: sig, LoadedAt: t0.Add(time.Hour)},
	}
	got, err := oip.Describe(models, "n", "")
	if err != nil {
		t.Fatalf("Describe: %v", err)
	}
	if v := got.Parameters["version"]; v != "n3" {
		t.Errorf("version = %v, want n3, the newest loaded", v)
	}
	if want := []string{"n1", "n2", "n3"}; !reflect.DeepEqual(got.Versions, want) {
		t.Errorf("versions = %q, want %q", got.Versions, want)
	}
	if got.Inputs == nil || got.Outputs == nil {
		t.Errorf("inputs %#v, outputs %#v; want empty lists, not nil, so JSON has [] not null", got.Inputs, got.Outputs)
	}
}

// Ensure unknown names, unknown versions and models that failed to load are
// not found, with a message that says what is loaded or why it is not.
func TestDescribeNotFound(t *testing.T) {
	tests := []struct {
		name, model, version string
		want                 []string
	}{
		{"unknown version", "m", "v9", []string{`model "m" has no version "v9"`, "v1", "v2"}},
		{"failed model", "f", "", []string{`model "f" is not loaded`, "failed to load: bad file"}},
		{"unknown model", "zzz", "", []string{`no model named "zzz"`, `"m" (primary)`, `"s" (shadow)`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := oip.Describe(loaded(), tt.model, tt.version)
			if err == nil {
				t.Fatalf("Describe = %+v, want an error", got)
			}
			assertError(t, err, understudy.ENOTFOUND, tt.want...)
		})
	}
	t.Run("unknown model lists no failed one", func(t *testing.T) {
		_, err := oip.Describe(loaded(), "zzz", "")
		if msg := understudy.ErrorMessage(err); strings.Contains(msg, `"f"`) {
			t.Errorf("message %q lists the model that failed to load", msg)
		}
	})
}

// Ensure only the primary is ready, and unknown models are not found.
func TestReady(t *testing.T) {
	tests := []struct {
		name, model, version string
		want                 bool
	}{
		{"primary", "m", "", true},
		{"primary by version", "m", "v2", true},
		{"older version is a shadow", "m", "v1", false},
		{"shadow", "s", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := oip.Ready(loaded(), tt.model, tt.version)
			if err != nil {
				t.Fatalf("Ready: %v", err)
			}
			if got != tt.want {
				t.Errorf("Ready(%q, %q) = %v, want %v", tt.model, tt.version, got, tt.want)
			}
		})
	}
	notFound := []struct {
		name, model, version string
		want                 string
	}{
		{"unknown model", "zzz", "", `no model named "zzz"`},
		{"unknown version", "m", "v9", `has no version "v9"`},
		{"failed model", "f", "", "bad file"},
	}
	for _, tt := range notFound {
		t.Run(tt.name, func(t *testing.T) {
			got, err := oip.Ready(loaded(), tt.model, tt.version)
			if err == nil {
				t.Fatalf("Ready = %v, want an error", got)
			}
			if got {
				t.Error("Ready = true with an error")
			}
			assertError(t, err, understudy.ENOTFOUND, tt.want)
		})
	}
}
