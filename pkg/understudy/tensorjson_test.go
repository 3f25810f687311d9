package understudy_test

import (
	"encoding/json"
	"math"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/understudy-ml/understudy/pkg/understudy"
)

// Ensure nested arrays of every element type decode to the right Go slice
// and shape.
func TestDecodeTensor(t *testing.T) {
	tests := []struct {
		name  string
		json  string
		info  understudy.TensorInfo
		shape []int64
		data  any
	}{
		{"float32 matrix", `[[1, 2.5], [3e2, -4]]`, ti(understudy.Float32, -1, 2), []int64{2, 2}, []float32{1, 2.5, 300, -4}},
		{"float64", `[0.1, 1e-300]`, ti(understudy.Float64, -1), []int64{2}, []float64{0.1, 1e-300}},
		{"int8 bounds", `[-128, 127]`, ti(understudy.Int8, 2), []int64{2}, []int8{-128, 127}},
		{"uint8 bounds", `[0, 255]`, ti(understudy.Uint8, -1), []int64{2}, []uint8{0, 255}},
		{"int16", `[[-32768]]`, ti(understudy.Int16, -1, 1), []int64{1, 1}, []int16{-32768}},
		{"uint16", `[65535]`, ti(understudy.Uint16, -1), []int64{1}, []uint16{65535}},
		{"int32 integral float", `[2.0, 1e3]`, ti(understudy.Int32, -1), []int64{2}, []int32{2, 1000}},
		{"int64 big", `[9223372036854775807]`, ti(understudy.Int64, -1), []int64{1}, []int64{math.MaxInt64}},
		{"uint32", `[4294967295]`, ti(understudy.Uint32, -1), []int64{1}, []uint32{math.MaxUint32}},
		{"uint64 big", `[18446744073709551615]`, ti(understudy.Uint64, -1), []int64{1}, []uint64{math.MaxUint64}},
		{"bool", `[[true, false, 1, 0]]`, ti(understudy.Bool, -1, 4), []int64{1, 4}, []bool{true, false, true, false}},
		{"string escapes", `[["a", "é\"\n"]]`, ti(understudy.String, -1, 2), []int64{1, 2}, []string{"a", "é\"\n"}},
		{"float16", `[1, 0.5, -2]`, ti(understudy.Float16, 3), []int64{3}, []uint16{0x3c00, 0x3800, 0xc000}},
		{"scalar", `3.5`, ti(understudy.Float32), []int64{}, []float32{3.5}},
		{"explicit", `{"shape": [2, 3], "data": [1,2,3,4,5,6]}`, ti(understudy.Float32, -1, 3), []int64{2, 3}, []float32{1, 2, 3, 4, 5, 6}},
		{"explicit scalar", `{"shape": [], "data": [7]}`, ti(understudy.Int64), []int64{}, []int64{7}},
		{"whitespace", " [ [ 1 ,2 ] ]\n", ti(understudy.Int64, 1, 2), []int64{1, 2}, []int64{1, 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := understudy.DecodeTensor([]byte(tt.json), tt.info)
			if err != nil {
				t.Fatalf("DecodeTensor: %v", err)
			}
			if !reflect.DeepEqual(got.Shape, tt.shape) {
				t.Errorf("shape = %v, want %v", got.Shape, tt.shape)
			}
			if !reflect.DeepEqual(got.Data, tt.data) {
				t.Errorf("data = %#v, want %#v", got.Data, tt.data)
			}
		})
	}
}

// Ensure every malformed input is refused with a message that names the
// input and the problem.
func TestDecodeTensorErrors(t *testing.T) {
	tests := []struct {
		name string
		json string
		info understudy.TensorInfo
		want []string // substrings of the message
	}{
		{"wrong rank", `[1, 2, 3, 4]`, ti(understudy.Float32, -1, 4), []string{`"x"`, "rank 2", "[-1,4]"}},
		{"wrong fixed dim", `[[1, 2, 3]]`, ti(understudy.Float32, -1, 4), []string{"dimension 1 is 3, want 4", "[-1,4]"}},
		{"ragged lengths", `[[1, 2], [3]]`, ti(understudy.Float32, -1, 2), []string{"ragged", "[1]", "1 elements", "has 2"}},
		{"ragged depth", `[[1, 2], 3]`, ti(understudy.Float32, -1, 2), []string{"ragged"}},
		{"ragged depth 2", `[1, [2, 3]]`, ti(understudy.Float32, -1, 2), []string{"ragged"}},
		{"string for number", `[[1, "a"]]`, ti(understudy.Float32, -1, 2), []string{"[0,1]", "a string", "float32"}},
		{"bool for number", `[[true]]`, ti(understudy.Int64, -1, 1), []string{"a boolean", "int64"}},
		{"null", `[null]`, ti(understudy.Float64, -1), []string{"null"}},
		{"int8 overflow", `[128]`, ti(understudy.Int8, -1), []string{"out of range for int8", "-128 to 127"}},
		{"uint8 negative", `[-1]`, ti(understudy.Uint8, -1), []string{"out of range for uint8", "0 to 255"}},
		{"uint8 overflow", `[256]`, ti(understudy.Uint8, -1), []string{"out of range for uint8"}},
		{"int32 overflow", `[2147483648]`, ti(understudy.Int32, -1), []string{"out of range for int32"}},
		{"non-integer", `[1.5]`, ti(understudy.Int32, -1), []string{"1.5", "not an integer", "int32"}},
		{"float32 overflow", `[1e39]`, ti(understudy.Float32, -1), []string{"out of range for float32"}},
		{"float16 overflow", `[70000]`, ti(understudy.Float16, -1), []string{"out of range for float16"}},
		{"number for string", `[1]`, ti(understudy.String, -1), []string{"a number", "string"}},
		{"explicit product", `{"shape": [2, 3], "data": [1, 2, 3, 4, 5]}`, ti(understudy.Float32, -1, 3), []string{"[2,3]", "6 elements", "data has 5"}},
		{"explicit nested data", `{"shape": [1, 2], "data": [[1, 2]]}`, ti(understudy.Float32, -1, 2), []string{"flat"}},
		{"explicit unknown field", `{"shape": [1], "dat": [1]}`, ti(understudy.Float32, -1), []string{"explicit form"}},
		{"empty array", `[]`, ti(understudy.Float32, -1), []string{"no elements"}},
		{"empty rows", `[[], []]`, ti(understudy.Float32, -1, -1), []string{"no elements"}},
		{"unterminated", `[[1, 2]`, ti(understudy.Float32, -1, 2), []string{"malformed"}},
		{"bad number", `[1x]`, ti(understudy.Float32, -1), []string{"invalid number"}},
		{"object inside", `[{"a": 1}]`, ti(understudy.Float32, -1), []string{"objects"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := understudy.DecodeTensor([]byte(tt.json), tt.info)
			if err == nil {
				t.Fatal("DecodeTensor succeeded, want an error")
			}
			if got := understudy.ErrorCode(err); got != understudy.EINVALID {
				t.Errorf("code = %q, want %q", got, understudy.EINVALID)
			}
			msg := understudy.ErrorMessage(err)
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("message %q does not contain %q", msg, w)
				}
			}
		})
	}
}

// Ensure tensors encode as nested JSON arrays, with non-finite floats as
// strings so the document stays valid JSON.
func TestAppendJSON(t *testing.T) {
	tests := []struct {
		name string
		t    understudy.Tensor
		want string
	}{
		{"matrix", understudy.Tensor{DType: understudy.Float32, Shape: []int64{2, 2}, Data: []float32{1, 0.1, -2, 3}}, `[[1,0.1],[-2,3]]`},
		{"scalar", understudy.Tensor{DType: understudy.Int64, Shape: []int64{}, Data: []int64{42}}, `42`},
		{"nonfinite", understudy.Tensor{DType: understudy.Float64, Shape: []int64{3}, Data: []float64{math.NaN(), math.Inf(1), math.Inf(-1)}}, `["NaN","Infinity","-Infinity"]`},
		{"float16", understudy.Tensor{DType: understudy.Float16, Shape: []int64{2}, Data: []uint16{0x3c00, 0xc000}}, `[1,-2]`},
		{"strings", understudy.Tensor{DType: understudy.String, Shape: []int64{2}, Data: []string{"a", `"q"`}}, `["a","\"q\""]`},
		{"bool", understudy.Tensor{DType: understudy.Bool, Shape: []int64{1, 2}, Data: []bool{true, false}}, `[[true,false]]`},
		{"uint64", understudy.Tensor{DType: understudy.Uint64, Shape: []int64{1}, Data: []uint64{math.MaxUint64}}, `[18446744073709551615]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(understudy.AppendJSON(nil, &tt.t)); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}

func ti(dt understudy.DType, dims ...int64) understudy.TensorInfo {
	if dims == nil {
		dims = []int64{}
	}
	return understudy.TensorInfo{Name: "x", DType: dt, Dims: dims}
}

// Ensure the ASCII fast path and the fallback both write what encoding/json
// would, so that stored and served strings parse back to the same value.
func TestAppendJSONString(t *testing.T) {
	for _, s := range []string{"", "req-1", "iris-v2", `a"b`, `back\slash`, "tab\there", "naïve", "<html>&", "\x00\x1f", "日本"} {
		got := understudy.AppendJSONString([]byte("x"), s)
		var back string
		if err := json.Unmarshal(got[1:], &back); err != nil || back != s || got[0] != 'x' {
			t.Errorf("AppendJSONString(%q) = %s; decodes to %q, %v", s, got, back, err)
		}
	}
}

// Ensure integers written as floats are accepted up to the real limits of
// int64 and uint64, and that values beyond them, however far, are reported
// as out of range rather than as malformed.
func TestDecodeTensorIntegerLimits(t *testing.T) {
	accept := []struct {
		name string
		json string
		info understudy.TensorInfo
		data any
	}{
		{"uint64 1e19", `[[1e19,0,0]]`, ti(understudy.Uint64, -1, 3), []uint64{1e19, 0, 0}},
		{"uint64 largest float below 2^64", `[1.8446744073709550e19]`, ti(understudy.Uint64, -1), []uint64{18446744073709549568}},
		{"int64 9.2e18", `[[9.2e18,0,0]]`, ti(understudy.Int64, -1, 3), []int64{9.2e18, 0, 0}},
		{"int64 -2^63", `[-9.223372036854775808e18]`, ti(understudy.Int64, -1), []int64{math.MinInt64}},
		{"uint64 negative zero", `[-0.0]`, ti(understudy.Uint64, -1), []uint64{0}},
	}
	for _, tt := range accept {
		t.Run(tt.name, func(t *testing.T) {
			got, err := understudy.DecodeTensor([]byte(tt.json), tt.info)
			if err != nil {
				t.Fatalf("DecodeTensor: %v", err)
			}
			if !reflect.DeepEqual(got.Data, tt.data) {
				t.Errorf("data = %v, want %v", got.Data, tt.data)
			}
		})
	}
	refuse := []struct {
		name string
		json string
		info understudy.TensorInfo
	}{
		{"uint64 2^64", `[1.8446744073709551616e19]`, ti(understudy.Uint64, -1)},
		{"uint64 negative", `[-1e3]`, ti(understudy.Uint64, -1)},
		{"int64 2^63", `[9.223372036854775808e18]`, ti(understudy.Int64, -1)},
		{"int64 below -2^63", `[-9.3e18]`, ti(understudy.Int64, -1)},
		{"int64 1e400", `[1e400]`, ti(understudy.Int64, -1)},
		{"int64 -1e400", `[-1e400]`, ti(understudy.Int64, -1)},
		{"uint8 1e400", `[1e400]`, ti(understudy.Uint8, -1)},
	}
	for _, tt := range refuse {
		t.Run(tt.name, func(t *testing.T) {
			_, err := understudy.DecodeTensor([]byte(tt.json), tt.info)
			if err == nil {
				t.Fatal("DecodeTensor succeeded, want an error")
			}
			if msg := understudy.ErrorMessage(err); !strings.Contains(msg, "out of range for "+tt.info.DType.String()) {
				t.Errorf("message %q does not say out of range for %v", msg, tt.info.DType)
			}
		})
	}
}

// Ensure a huge number token is clipped in error messages rather than echoed
// back whole.
func TestDecodeTensorClipsHugeTokens(t *testing.T) {
	digits := "1" + strings.Repeat("0", 100000)
	tests := []struct {
		name string
		json string
		info understudy.TensorInfo
	}{
		{"int64 digits", `[` + digits + `]`, ti(understudy.Int64, -1)},
		{"uint64 digits", `[` + digits + `]`, ti(understudy.Uint64, -1)},
		{"int8 digits", `[` + digits + `]`, ti(understudy.Int8, -1)},
		{"int32 fraction", `[` + digits + `.5]`, ti(understudy.Int32, -1)},
		{"int64 integral float", `[` + digits + `.0]`, ti(understudy.Int64, -1)},
		{"int64 not an integer", `[1.5` + strings.Repeat("0", 100000) + `]`, ti(understudy.Int64, -1)},
		{"uint16 negative", `[-` + digits + `]`, ti(understudy.Uint16, -1)},
		{"float32", `[` + digits + `]`, ti(understudy.Float32, -1)},
		{"float16", `[` + digits + `]`, ti(understudy.Float16, -1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := understudy.DecodeTensor([]byte(tt.json), tt.info)
			if err == nil {
				t.Fatal("DecodeTensor succeeded, want an error")
			}
			if msg := understudy.ErrorMessage(err); len(msg) > 300 {
				t.Errorf("message is %d bytes, want the token clipped: %.200s…", len(msg), msg)
			}
		})
	}
}

// Ensure commas inside a string do not make the decoder reserve memory for
// elements that are not there: a request refused for its element type must
// not cost many times its own size.
func TestDecodeTensorReservationBounded(t *testing.T) {
	body := []byte(`["` + strings.Repeat(",", 8<<20) + `"]`)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err := understudy.DecodeTensor(body, ti(understudy.Int64, -1))
	runtime.ReadMemStats(&after)
	if err == nil {
		t.Fatal("DecodeTensor succeeded, want an error for a string in an int64 input")
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 2*uint64(len(body)) {
		t.Errorf("decoding a %d-byte body allocated %d bytes", len(body), got)
	}
}

// Ensure a nested array for an element type the server cannot convert is a
// client error that names the type, never a panic or a tensor.
func TestDecodeUnsupportedType(t *testing.T) {
	_, err := understudy.DecodeTensor([]byte(`[1, 2]`), understudy.TensorInfo{Name: "x", DType: understudy.DType(99), Dims: []int64{2}})
	if understudy.ErrorCode(err) != understudy.EINVALID || !strings.Contains(err.Error(), "dtype(99) is not supported") {
		t.Errorf("error %v, want EINVALID naming dtype(99)", err)
	}
}
