package oip_test

import (
	"bytes"
	"encoding/binary"
	"reflect"
	"testing"

	"github.com/understudy-ml/understudy/pkg/oip"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// twoInputs is a model taking "a", rows of three float32s, and "b", a
// vector of int64s, and giving three outputs.
func twoInputs() *understudy.Signature {
	return &understudy.Signature{
		Inputs: []understudy.TensorInfo{
			{Name: "a", DType: understudy.Float32, Dims: []int64{-1, 3}},
			{Name: "b", DType: understudy.Int64, Dims: []int64{-1}},
		},
		Outputs: []understudy.TensorInfo{
			{Name: "y", DType: understudy.Float32, Dims: []int64{-1}},
			{Name: "p", DType: understudy.Float32, Dims: []int64{-1, 2}},
			{Name: "z", DType: understudy.Int64, Dims: []int64{-1}},
		},
	}
}

// le encodes fixed-size values as little-endian bytes with encoding/binary.
func le(tb testing.TB, vals any) []byte {
	tb.Helper()
	var buf bytes.Buffer
	if err := binary.Write(&buf, binary.LittleEndian, vals); err != nil {
		tb.Fatalf("binary.Write(%T): %v", vals, err)
	}
	return buf.Bytes()
}

// Ensure every form a request may carry its data in (JSON, raw bytes, typed
// contents, and a mix) decodes to the same tensors, whatever the order of
// the inputs.
func TestDecodeInputs(t *testing.T) {
	aData := []float32{1, -2.5, 3, 4, 5, 1e-3}
	bData := []int64{-2, 1 << 40}
	tests := []struct {
		name   string
		inputs []oip.Input
	}{
		{"json", []oip.Input{
			{Name: "a", Datatype: "FP32", Shape: []int64{2, 3}, JSON: []byte(`[[1, -2.5, 3], [4, 5, 1e-3]]`)},
			{Name: "b", Datatype: "INT64", Shape: []int64{2}, JSON: []byte(`[-2, 1099511627776]`)},
		}},
		{"json flat", []oip.Input{
			{Name: "a", Datatype: "FP32", Shape: []int64{2, 3}, JSON: []byte(`[1, -2.5, 3, 4, 5, 1e-3]`)},
			{Name: "b", Datatype: "INT64", Shape: []int64{2}, JSON: []byte(`[-2, 1099511627776]`)},
		}},
		{"raw", []oip.Input{
			{Name: "a", Datatype: "FP32", Shape: []int64{2, 3}, Raw: le(t, aData), HasRaw: true},
			{Name: "b", Datatype: "INT64", Shape: []int64{2}, Raw: le(t, bData), HasRaw: true},
		}},
		{"typed", []oip.Input{
			{Name: "a", Datatype: "FP32", Shape: []int64{2, 3}, Values: []float32{1, -2.5, 3, 4, 5, 1e-3}, ValuesField: "fp32_contents"},
			{Name: "b", Datatype: "INT64", Shape: []int64{2}, Values: []int64{-2, 1 << 40}, ValuesField: "int64_contents"},
		}},
		{"mixed, reordered", []oip.Input{
			{Name: "b", Datatype: "INT64", Shape: []int64{2}, Raw: le(t, bData), HasRaw: true},
			{Name: "a", Datatype: "FP32", Shape: []int64{2, 3}, JSON: []byte(`[1, -2.5, 3, 4, 5, 1e-3]`)},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := oip.DecodeInputs(tt.inputs, twoInputs())
			if err != nil {
				t.Fatalf("DecodeInputs: %v", err)
			}
			if len(got) != 2 {
				t.Errorf("got %d tensors, want 2", len(got))
			}
			assertTensor(t, got["a"], understudy.Float32, []int64{2, 3}, aData)
			assertTensor(t, got["b"], understudy.Int64, []int64{2}, bData)
		})
	}
}

// Ensure FP16 raw data keeps its half-precision bits and BYTES raw data is
// read as length-prefixed strings.
func TestDecodeInputsRawHalfAndBytes(t *testing.T) {
	sig := &understudy.Signature{Inputs: []understudy.TensorInfo{
		{Name: "h", DType: understudy.Float16, Dims: []int64{-1}},
		{Name: "s", DType: understudy.String, Dims: []int64{1, -1}},
	}}
	// Half bits of 1, -2 and +Inf, written out by hand.
	half := []byte{0x00, 0x3C, 0x00, 0xC0, 0x00, 0x7C}
	var str []byte
	for _, s := range []string{"abc", "", "é"} {
		str = binary.LittleEndian.AppendUint32(str, uint32(len(s)))
		str = append(str, s...)
	}
	got, err := oip.DecodeInputs([]oip.Input{
		{Name: "h", Datatype: "FP16", Shape: []int64{3}, Raw: half, HasRaw: true},
		{Name: "s", Datatype: "BYTES", Shape: []int64{1, 3}, Raw: str, HasRaw: true},
	}, sig)
	if err != nil {
		t.Fatalf("DecodeInputs: %v", err)
	}
	assertTensor(t, got["h"], understudy.Float16, []int64{3}, []uint16{0x3c00, 0xc000, 0x7c00})
	if f := got["h"].Float64s(); f[0] != 1 || f[1] != -2 || f[2] <= 65504 {
		t.Errorf("h as floats = %v, want [1 -2 +Inf]", f)
	}
	assertTensor(t, got["s"], understudy.String, []int64{1, 3}, []string{"abc", "", "é"})
}

// Ensure every fault in a request's inputs is refused as the client's, with
// a message that says what the model expects.
func TestDecodeInputsErrors(t *testing.T) {
	a := func() oip.Input {
		return oip.Input{Name: "a", Datatype: "FP32", Shape: []int64{1, 3}, JSON: []byte(`[1, 2, 3]`)}
	}
	b := func() oip.Input {
		return oip.Input{Name: "b", Datatype: "INT64", Shape: []int64{1}, JSON: []byte(`[1]`)}
	}
	with := func(in oip.Input, f func(*oip.Input)) oip.Input { f(&in); return in }
	modelInputs := `"a" (FP32 [-1,3]), "b" (INT64 [-1])`
	tests := []struct {
		name   string
		inputs []oip.Input
		want   []string
	}{
		{"unknown input", []oip.Input{a(), b(), with(b(), func(in *oip.Input) { in.Name = "c" })},
			[]string{`unknown input "c"`, "the model's inputs are " + modelInputs}},
		{"missing input", []oip.Input{a()},
			[]string{`missing input "b"`, "the model's inputs are " + modelInputs}},
		{"no inputs", nil,
			[]string{"the request has no inputs", modelInputs}},
		{"duplicate input", []oip.Input{a(), b(), a()},
			[]string{`input "a" is given twice`}},
		{"wrong datatype", []oip.Input{with(a(), func(in *oip.Input) { in.Datatype = "FP64" }), b()},
			[]string{`input "a"`, "datatype FP64", "the model expects FP32 with shape [-1,3]"}},
		{"unknown datatype", []oip.Input{with(a(), func(in *oip.Input) { in.Datatype = "FLOAT32" }), b()},
			[]string{`datatype "FLOAT32" is not one of BOOL, UINT8, UINT16, UINT32, UINT64, INT8, INT16, INT32, INT64, FP16, FP32, FP64, BYTES`, "the model expects FP32"}},
		{"lower-case datatype", []oip.Input{a(), with(b(), func(in *oip.Input) { in.Datatype = "int64" })},
			[]string{`datatype "int64" is not one of`, "the model expects INT64"}},
		{"json and raw", []oip.Input{with(a(), func(in *oip.Input) { in.Raw, in.HasRaw = le(t, []float32{1, 2, 3}), true }), b()},
			[]string{`input "a"`, "more than one form"}},
		{"raw and typed", []oip.Input{b(), with(a(), func(in *oip.Input) {
			in.JSON, in.Raw, in.HasRaw, in.Values, in.ValuesField = nil, le(t, []float32{1, 2, 3}), true, []float32{1, 2, 3}, "fp32_contents"
		})}, []string{"more than one form"}},
		{"no data", []oip.Input{with(a(), func(in *oip.Input) { in.JSON = nil }), b()},
			[]string{`input "a": no data`, "[1,3]"}},
		{"empty raw is data, too short", []oip.Input{with(a(), func(in *oip.Input) { in.JSON, in.HasRaw = nil, true }), b()},
			[]string{"raw data is 0 bytes", "needs 12"}},
		{"raw too short", []oip.Input{with(a(), func(in *oip.Input) { in.JSON, in.Raw, in.HasRaw = nil, make([]byte, 8), true }), b()},
			[]string{"raw data is 8 bytes", "needs 12"}},
		{"raw shape against the model", []oip.Input{with(a(), func(in *oip.Input) {
			in.JSON, in.Shape, in.Raw, in.HasRaw = nil, []int64{1, 4}, make([]byte, 16), true
		}), b()}, []string{"dimension 1 is 4, want 3"}},
		{"raw negative dimension", []oip.Input{with(a(), func(in *oip.Input) {
			in.JSON, in.Shape, in.Raw, in.HasRaw = nil, []int64{-1, 3}, make([]byte, 12), true
		}), b()}, []string{"negative dimension"}},
		{"raw huge shape", []oip.Input{with(a(), func(in *oip.Input) {
			in.JSON, in.Shape, in.Raw, in.HasRaw = nil, []int64{1 << 40, 3}, make([]byte, 12), true
		}), b()}, []string{"too large"}},
		{"typed count", []oip.Input{a(), with(b(), func(in *oip.Input) {
			in.JSON, in.Values, in.ValuesField = nil, []int64{1, 2}, "int64_contents"
		})}, []string{"int64_contents has 2 elements", "shape [1] holds 1"}},
		{"json shape against the model", []oip.Input{with(a(), func(in *oip.Input) { in.Shape = []int64{3} }), b()},
			[]string{"want rank 2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := oip.DecodeInputs(tt.inputs, twoInputs())
			if err == nil {
				t.Fatalf("DecodeInputs = %v, want an error", got)
			}
			assertError(t, err, understudy.EINVALID, tt.want...)
		})
	}
}

// Ensure the outputs to send back are the model's, in its order, when none
// are asked for, else the requested ones in the request's order, and that
// a typo or a repeat is refused before the model runs.
func TestOutputNames(t *testing.T) {
	accept := []struct {
		name      string
		requested []string
		want      []string
	}{
		{"none", nil, []string{"y", "p", "z"}},
		{"empty", []string{}, []string{"y", "p", "z"}},
		{"subset in request order", []string{"z", "y"}, []string{"z", "y"}},
		{"all reordered", []string{"p", "z", "y"}, []string{"p", "z", "y"}},
	}
	for _, tt := range accept {
		t.Run(tt.name, func(t *testing.T) {
			got, err := oip.OutputNames(tt.requested, twoInputs())
			if err != nil {
				t.Fatalf("OutputNames: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("OutputNames(%q) = %q, want %q", tt.requested, got, tt.want)
			}
		})
	}
	refuse := []struct {
		name      string
		requested []string
		want      []string
	}{
		{"unknown", []string{"y", "w"}, []string{`unknown output "w"`, `the model's outputs are "y" (FP32 [-1]), "p" (FP32 [-1,2]), "z" (INT64 [-1])`}},
		{"input name", []string{"a"}, []string{`unknown output "a"`}},
		{"duplicate", []string{"y", "z", "y"}, []string{`output "y" is requested twice`}},
	}
	for _, tt := range refuse {
		t.Run(tt.name, func(t *testing.T) {
			got, err := oip.OutputNames(tt.requested, twoInputs())
			if err == nil {
				t.Fatalf("OutputNames = %q, want an error", got)
			}
			assertError(t, err, understudy.EINVALID, tt.want...)
		})
	}
}
