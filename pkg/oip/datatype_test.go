package oip_test

import (
	"testing"

	"github.com/understudy-ml/understudy/pkg/oip"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// Ensure every protocol datatype names its element type and back.
func TestDatatype(t *testing.T) {
	tests := []struct {
		name string
		dt   understudy.DType
	}{
		{"BOOL", understudy.Bool},
		{"UINT8", understudy.Uint8},
		{"UINT16", understudy.Uint16},
		{"UINT32", understudy.Uint32},
		{"UINT64", understudy.Uint64},
		{"INT8", understudy.Int8},
		{"INT16", understudy.Int16},
		{"INT32", understudy.Int32},
		{"INT64", understudy.Int64},
		{"FP16", understudy.Float16},
		{"FP32", understudy.Float32},
		{"FP64", understudy.Float64},
		{"BYTES", understudy.String},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := oip.Datatype(tt.dt); got != tt.name {
				t.Errorf("Datatype(%v) = %q, want %q", tt.dt, got, tt.name)
			}
			got, ok := oip.ParseDatatype(tt.name)
			if !ok || got != tt.dt {
				t.Errorf("ParseDatatype(%q) = %v, %v; want %v, true", tt.name, got, ok, tt.dt)
			}
		})
	}
	for _, name := range []string{"BF16", "fp32", "Fp32", "FLOAT32", "STRING", ""} {
		t.Run("refuses "+name, func(t *testing.T) {
			if got, ok := oip.ParseDatatype(name); ok || got != understudy.Invalid {
				t.Errorf("ParseDatatype(%q) = %v, %v; want invalid, false", name, got, ok)
			}
		})
	}
}

// Ensure each element type names the typed contents array gRPC carries it
// in, and FP16, which has none, names none.
func TestContentsField(t *testing.T) {
	tests := []struct {
		dt   understudy.DType
		want string
	}{
		{understudy.Bool, "bool_contents"},
		{understudy.Int8, "int_contents"},
		{understudy.Int16, "int_contents"},
		{understudy.Int32, "int_contents"},
		{understudy.Int64, "int64_contents"},
		{understudy.Uint8, "uint_contents"},
		{understudy.Uint16, "uint_contents"},
		{understudy.Uint32, "uint_contents"},
		{understudy.Uint64, "uint64_contents"},
		{understudy.Float32, "fp32_contents"},
		{understudy.Float64, "fp64_contents"},
		{understudy.String, "bytes_contents"},
		{understudy.Float16, ""},
	}
	for _, tt := range tests {
		t.Run(tt.dt.String(), func(t *testing.T) {
			if got := oip.ContentsField(tt.dt); got != tt.want {
				t.Errorf("ContentsField(%v) = %q, want %q", tt.dt, got, tt.want)
			}
		})
	}
}
