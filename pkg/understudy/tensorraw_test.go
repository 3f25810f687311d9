package understudy_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/understudy-ml/understudy/pkg/understudy"
)

// leBytes encodes fixed-size values as little-endian bytes with
// encoding/binary, independently of AppendRaw.
func leBytes(tb testing.TB, vals any) []byte {
	tb.Helper()
	var buf bytes.Buffer
	if err := binary.Write(&buf, binary.LittleEndian, vals); err != nil {
		tb.Fatalf("binary.Write(%T): %v", vals, err)
	}
	return buf.Bytes()
}

// rawStrings encodes strings in the raw form: a 4-byte little-endian length
// before each.
func rawStrings(ss ...string) []byte {
	var b []byte
	for _, s := range ss {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	return b
}

type rawCase struct {
	name string
	t    understudy.Tensor
	want []byte
}

// rawCases holds one tensor of every element type, with values that catch
// byte-order and sign mistakes, and its raw bytes built with encoding/binary.
func rawCases(tb testing.TB) []rawCase {
	tb.Helper()
	tensor := func(dt understudy.DType, shape []int64, data any) understudy.Tensor {
		return understudy.Tensor{DType: dt, Shape: shape, Data: data}
	}
	return []rawCase{
		{"float32", tensor(understudy.Float32, []int64{2, 2}, []float32{1.5, -2, float32(math.Inf(1)), math.SmallestNonzeroFloat32}),
			leBytes(tb, []float32{1.5, -2, float32(math.Inf(1)), math.SmallestNonzeroFloat32})},
		{"float64", tensor(understudy.Float64, []int64{3}, []float64{1.5, -2.25, 1e300}),
			leBytes(tb, []float64{1.5, -2.25, 1e300})},
		{"float16", tensor(understudy.Float16, []int64{1, 3}, []uint16{0x3c00, 0xc000, 0x7c00}),
			leBytes(tb, []uint16{0x3c00, 0xc000, 0x7c00})},
		{"int8", tensor(understudy.Int8, []int64{3}, []int8{-1, math.MinInt8, math.MaxInt8}),
			leBytes(tb, []int8{-1, math.MinInt8, math.MaxInt8})},
		{"int16", tensor(understudy.Int16, []int64{3}, []int16{-2, 0x0102, math.MinInt16}),
			leBytes(tb, []int16{-2, 0x0102, math.MinInt16})},
		{"int32", tensor(understudy.Int32, []int64{3}, []int32{-2, 0x01020304, math.MinInt32}),
			leBytes(tb, []int32{-2, 0x01020304, math.MinInt32})},
		{"int64", tensor(understudy.Int64, []int64{3}, []int64{-2, 0x0102030405060708, math.MinInt64}),
			leBytes(tb, []int64{-2, 0x0102030405060708, math.MinInt64})},
		{"uint8", tensor(understudy.Uint8, []int64{3}, []uint8{0, 0x80, math.MaxUint8}),
			leBytes(tb, []uint8{0, 0x80, math.MaxUint8})},
		{"uint16", tensor(understudy.Uint16, []int64{2}, []uint16{0x0102, math.MaxUint16}),
			leBytes(tb, []uint16{0x0102, math.MaxUint16})},
		{"uint32", tensor(understudy.Uint32, []int64{2}, []uint32{0x01020304, math.MaxUint32}),
			leBytes(tb, []uint32{0x01020304, math.MaxUint32})},
		{"uint64", tensor(understudy.Uint64, []int64{2}, []uint64{0x0102030405060708, math.MaxUint64}),
			leBytes(tb, []uint64{0x0102030405060708, math.MaxUint64})},
		{"bool", tensor(understudy.Bool, []int64{3}, []bool{true, false, true}),
			leBytes(tb, []bool{true, false, true})},
		{"string", tensor(understudy.String, []int64{2, 2}, []string{"", "a", "héllo", "x\xffy"}),
			rawStrings("", "a", "héllo", "x\xffy")},
		{"scalar", tensor(understudy.Int64, []int64{}, []int64{-2}),
			leBytes(tb, []int64{-2})},
	}
}

// Ensure the exact bytes of a few values, written out by hand, so that a
// mistake shared by the encoder and encoding/binary's use above cannot hide.
func TestRawBytesByHand(t *testing.T) {
	tests := []struct {
		name string
		t    understudy.Tensor
		want []byte
	}{
		{"int16 -2", understudy.Tensor{DType: understudy.Int16, Shape: []int64{1}, Data: []int16{-2}}, []byte{0xFE, 0xFF}},
		{"uint16 0x0102", understudy.Tensor{DType: understudy.Uint16, Shape: []int64{1}, Data: []uint16{0x0102}}, []byte{0x02, 0x01}},
		{"float32 1.5", understudy.Tensor{DType: understudy.Float32, Shape: []int64{1}, Data: []float32{1.5}}, []byte{0x00, 0x00, 0xC0, 0x3F}},
		{"float16 1 and -2", understudy.Tensor{DType: understudy.Float16, Shape: []int64{2}, Data: []uint16{0x3c00, 0xc000}}, []byte{0x00, 0x3C, 0x00, 0xC0}},
		{"int32 -2", understudy.Tensor{DType: understudy.Int32, Shape: []int64{1}, Data: []int32{-2}}, []byte{0xFE, 0xFF, 0xFF, 0xFF}},
		{"int8 -1", understudy.Tensor{DType: understudy.Int8, Shape: []int64{1}, Data: []int8{-1}}, []byte{0xFF}},
		{"bool", understudy.Tensor{DType: understudy.Bool, Shape: []int64{2}, Data: []bool{true, false}}, []byte{1, 0}},
		{"string", understudy.Tensor{DType: understudy.String, Shape: []int64{1}, Data: []string{"ab"}}, []byte{2, 0, 0, 0, 'a', 'b'}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := understudy.AppendRaw(nil, &tt.t); !bytes.Equal(got, tt.want) {
				t.Errorf("AppendRaw = % X, want % X", got, tt.want)
			}
			got, err := understudy.DecodeRaw(tt.want, tt.t.DType, tt.t.Shape, "x")
			if err != nil {
				t.Fatalf("DecodeRaw: %v", err)
			}
			if !reflect.DeepEqual(got.Data, tt.t.Data) {
				t.Errorf("DecodeRaw data = %#v, want %#v", got.Data, tt.t.Data)
			}
		})
	}
}

// Ensure AppendRaw writes every element type as little-endian row-major
// bytes (length-prefixed for strings), appending after what the buffer
// holds, and DecodeRaw reads them back to the same tensor.
func TestRawRoundTrip(t *testing.T) {
	for _, tt := range rawCases(t) {
		t.Run(tt.name, func(t *testing.T) {
			if got := understudy.AppendRaw(nil, &tt.t); !bytes.Equal(got, tt.want) {
				t.Errorf("AppendRaw = % X, want % X", got, tt.want)
			}
			prefix := []byte("pre")
			if got := understudy.AppendRaw(prefix, &tt.t); !bytes.Equal(got, append([]byte("pre"), tt.want...)) {
				t.Errorf("AppendRaw after a prefix = % X, want the prefix and % X", got, tt.want)
			}
			got, err := understudy.DecodeRaw(tt.want, tt.t.DType, tt.t.Shape, "x")
			if err != nil {
				t.Fatalf("DecodeRaw: %v", err)
			}
			if got.DType != tt.t.DType {
				t.Errorf("dtype = %v, want %v", got.DType, tt.t.DType)
			}
			// slices.Equal: a rank-0 shape comes back nil, which is rank 0 too.
			if !slices.Equal(got.Shape, tt.t.Shape) {
				t.Errorf("shape = %v, want %v", got.Shape, tt.t.Shape)
			}
			if !reflect.DeepEqual(got.Data, tt.t.Data) {
				t.Errorf("data = %#v, want %#v", got.Data, tt.t.Data)
			}
		})
	}
}

// Ensure RawSize is the length AppendRaw writes, for every element type.
func TestRawSize(t *testing.T) {
	for _, tt := range rawCases(t) {
		t.Run(tt.name, func(t *testing.T) {
			if got, want := understudy.RawSize(&tt.t), len(understudy.AppendRaw(nil, &tt.t)); got != want {
				t.Errorf("RawSize = %d, want %d", got, want)
			}
		})
	}
}

// Ensure malformed raw data is refused as the client's fault, with a message
// that names the input and what size was expected.
func TestDecodeRawErrors(t *testing.T) {
	tests := []struct {
		name  string
		raw   []byte
		dt    understudy.DType
		shape []int64
		want  []string
	}{
		{"float32 too short", make([]byte, 20), understudy.Float32, []int64{2, 3}, []string{`"x"`, "raw data is 20 bytes", "[2,3]", "float32", "needs 24", "6 elements of 4 bytes"}},
		{"int64 too long", make([]byte, 17), understudy.Int64, []int64{2}, []string{"raw data is 17 bytes", "needs 16"}},
		{"float16 odd", make([]byte, 3), understudy.Float16, []int64{2}, []string{"raw data is 3 bytes", "needs 4"}},
		{"bool byte 2", []byte{1, 2, 0}, understudy.Bool, []int64{3}, []string{"bool element 1", "0x02", "want 0 or 1"}},
		{"strings too few bytes for prefixes", []byte{0, 0, 0, 0, 0}, understudy.String, []int64{2}, []string{"raw data is 5 bytes", "too few for the 2 strings", "[2]"}},
		{"strings truncated length prefix", append(rawStrings("abcd"), 1, 0, 0), understudy.String, []int64{2}, []string{"ends after 1 of the 2 strings"}},
		{"string length beyond data", append(binary.LittleEndian.AppendUint32(nil, 10), "abc"...), understudy.String, []int64{1}, []string{"raw string 0 claims 10 bytes", "only 3 remain"}},
		{"string huge length", append(binary.LittleEndian.AppendUint32(nil, math.MaxUint32), "abc"...), understudy.String, []int64{1}, []string{"claims 4294967295 bytes"}},
		{"strings trailing bytes", append(rawStrings("a"), 'z', 'z'), understudy.String, []int64{1}, []string{"2 bytes after the 1 strings"}},
		{"negative dimension", make([]byte, 12), understudy.Float32, []int64{3, -1}, []string{"[3,-1]", "negative dimension at 1"}},
		{"huge shape", nil, understudy.Float32, []int64{1 << 30, 1 << 30}, []string{"[1073741824,1073741824]", "too large"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := understudy.DecodeRaw(tt.raw, tt.dt, tt.shape, "x")
			assertInvalid(t, err, tt.want...)
		})
	}
}

// Ensure a shape the client made up is refused before anything is
// allocated for it: neither a shape too large to hold nor one that would fit
// but does not match the bytes sent may cost memory or time.
func TestDecodeRawHugeShapeDoesNotAllocate(t *testing.T) {
	tests := []struct {
		name  string
		raw   []byte
		dt    understudy.DType
		shape []int64
	}{
		{"too large float32", nil, understudy.Float32, []int64{1 << 30, 1 << 30}},
		{"too large string", make([]byte, 8), understudy.String, []int64{1 << 40}},
		{"billion float64 with 8 bytes", make([]byte, 8), understudy.Float64, []int64{1 << 30, 1}},
		{"billion strings with 4 bytes", make([]byte, 4), understudy.String, []int64{1 << 30}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			start := time.Now()
			_, err := understudy.DecodeRaw(tt.raw, tt.dt, tt.shape, "x")
			elapsed := time.Since(start)
			runtime.ReadMemStats(&after)
			assertInvalid(t, err)
			if elapsed > time.Second {
				t.Errorf("DecodeRaw took %v, want it refused at once", elapsed)
			}
			if got := after.TotalAlloc - before.TotalAlloc; got > 1<<20 {
				t.Errorf("DecodeRaw allocated %d bytes for a refused shape", got)
			}
		})
	}
}

// Ensure every typed array fills the element types it can hold, narrowing
// gRPC's widened integers, and that the tensor does not share the array.
func TestFromValues(t *testing.T) {
	tests := []struct {
		name  string
		dt    understudy.DType
		shape []int64
		src   any
		want  any
	}{
		{"bool", understudy.Bool, []int64{2}, []bool{true, false}, []bool{true, false}},
		{"float32", understudy.Float32, []int64{2, 2}, []float32{1.5, -2, 0, 3}, []float32{1.5, -2, 0, 3}},
		{"float64", understudy.Float64, []int64{1}, []float64{-1e300}, []float64{-1e300}},
		{"int64", understudy.Int64, []int64{2}, []int64{math.MinInt64, math.MaxInt64}, []int64{math.MinInt64, math.MaxInt64}},
		{"uint64", understudy.Uint64, []int64{1}, []uint64{math.MaxUint64}, []uint64{math.MaxUint64}},
		{"int8 bounds", understudy.Int8, []int64{2}, []int32{-128, 127}, []int8{-128, 127}},
		{"int16 bounds", understudy.Int16, []int64{2}, []int32{-32768, 32767}, []int16{-32768, 32767}},
		{"int32 bounds", understudy.Int32, []int64{2}, []int32{math.MinInt32, math.MaxInt32}, []int32{math.MinInt32, math.MaxInt32}},
		{"uint8 bounds", understudy.Uint8, []int64{2}, []uint32{0, 255}, []uint8{0, 255}},
		{"uint16 bounds", understudy.Uint16, []int64{2}, []uint32{0, 65535}, []uint16{0, 65535}},
		{"uint32 bounds", understudy.Uint32, []int64{1}, []uint32{math.MaxUint32}, []uint32{math.MaxUint32}},
		{"bytes", understudy.String, []int64{1, 2}, [][]byte{[]byte("a\"b"), {}}, []string{"a\"b", ""}},
		{"scalar", understudy.Float32, []int64{}, []float32{7}, []float32{7}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := understudy.FromValues(tt.dt, tt.shape, "x", "contents", tt.src)
			if err != nil {
				t.Fatalf("FromValues: %v", err)
			}
			if got.DType != tt.dt {
				t.Errorf("dtype = %v, want %v", got.DType, tt.dt)
			}
			// slices.Equal: a rank-0 shape comes back nil, which is rank 0 too.
			if !slices.Equal(got.Shape, tt.shape) {
				t.Errorf("shape = %v, want %v", got.Shape, tt.shape)
			}
			if !reflect.DeepEqual(got.Data, tt.want) {
				t.Errorf("data = %#v, want %#v", got.Data, tt.want)
			}
		})
	}
	t.Run("copies the source", func(t *testing.T) {
		src := []float32{1, 2}
		got, err := understudy.FromValues(understudy.Float32, []int64{2}, "x", "fp32_contents", src)
		if err != nil {
			t.Fatalf("FromValues: %v", err)
		}
		src[0] = 99
		if d := got.Data.([]float32); d[0] != 1 {
			t.Errorf("data[0] = %v after the source changed, want 1", d[0])
		}
	})
}

// Ensure values that a narrower type cannot hold, and arrays whose length
// does not match the shape, are refused as the client's fault, naming the
// array, the element and the type.
func TestFromValuesErrors(t *testing.T) {
	tests := []struct {
		name  string
		dt    understudy.DType
		shape []int64
		what  string
		src   any
		want  []string
	}{
		{"int8 -129", understudy.Int8, []int64{2}, "int_contents", []int32{0, -129}, []string{`"x"`, "element [1] value -129", "out of range for int8 (-128 to 127)"}},
		{"int8 128", understudy.Int8, []int64{1}, "int_contents", []int32{128}, []string{"element [0] value 128", "out of range for int8"}},
		{"int16 -32769", understudy.Int16, []int64{1}, "int_contents", []int32{-32769}, []string{"value -32769", "out of range for int16"}},
		{"int16 32768", understudy.Int16, []int64{1}, "int_contents", []int32{32768}, []string{"value 32768", "out of range for int16"}},
		{"uint8 256", understudy.Uint8, []int64{3}, "uint_contents", []uint32{0, 255, 256}, []string{"element [2] value 256", "out of range for uint8 (0 to 255)"}},
		{"uint16 65536", understudy.Uint16, []int64{1}, "uint_contents", []uint32{65536}, []string{"value 65536", "out of range for uint16"}},
		{"too few", understudy.Float32, []int64{2, 2}, "fp32_contents", []float32{1, 2, 3}, []string{"fp32_contents has 3 elements", "shape [2,2] holds 4"}},
		{"too many", understudy.Int64, []int64{1}, "int64_contents", []int64{1, 2}, []string{"int64_contents has 2 elements", "shape [1] holds 1"}},
		{"negative dimension", understudy.Float32, []int64{-1}, "fp32_contents", []float32{1}, []string{"negative dimension at 0"}},
		{"huge shape", understudy.Float32, []int64{1 << 30, 1 << 30}, "fp32_contents", []float32{1}, []string{"too large"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := understudy.FromValues(tt.dt, tt.shape, "x", tt.what, tt.src)
			assertInvalid(t, err, tt.want...)
		})
	}
}

// Ensure a typed array that cannot hold the element type is an error, not a
// panic. The transports pick the array by datatype, so a mismatch is the
// server's own fault and internal.
func TestFromValuesSourceDoesNotFit(t *testing.T) {
	tests := []struct {
		name string
		dt   understudy.DType
		src  any
	}{
		{"int64 for float32", understudy.Float32, []int64{1}},
		{"float32 for float16", understudy.Float16, []float32{1}},
		{"int32 for int64", understudy.Int64, []int32{1}},
		{"uint32 for int32", understudy.Int32, []uint32{1}},
		{"int32 for uint8", understudy.Uint8, []int32{1}},
		{"strings for string", understudy.String, []string{"a"}},
		{"nil", understudy.Float32, nil},
		{"not a slice", understudy.Float32, float32(1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := understudy.FromValues(tt.dt, []int64{1}, "x", "contents", tt.src)
			if err == nil {
				t.Fatalf("FromValues = %+v, want an error", got)
			}
			if code := understudy.ErrorCode(err); code != understudy.EINTERNAL {
				t.Errorf("code = %q, want %q", code, understudy.EINTERNAL)
			}
		})
	}
}

// Ensure tensors encode as one flat JSON array in row-major order, a scalar
// as an array of one, with non-finite floats and quoted strings kept valid
// JSON.
func TestAppendJSONFlat(t *testing.T) {
	tests := []struct {
		name string
		t    understudy.Tensor
		want string
	}{
		{"float32 [2,3]", understudy.Tensor{DType: understudy.Float32, Shape: []int64{2, 3}, Data: []float32{1, 2.5, -3, 0.1, 5, 6}}, `[1,2.5,-3,0.1,5,6]`},
		{"rank 0", understudy.Tensor{DType: understudy.Int64, Shape: []int64{}, Data: []int64{5}}, `[5]`},
		{"empty", understudy.Tensor{DType: understudy.Float32, Shape: []int64{0, 3}, Data: []float32{}}, `[]`},
		{"float32 nonfinite", understudy.Tensor{DType: understudy.Float32, Shape: []int64{4}, Data: []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)), 1}}, `["NaN","Infinity","-Infinity",1]`},
		{"float64 nonfinite", understudy.Tensor{DType: understudy.Float64, Shape: []int64{1, 3}, Data: []float64{math.NaN(), math.Inf(1), math.Inf(-1)}}, `["NaN","Infinity","-Infinity"]`},
		{"float16", understudy.Tensor{DType: understudy.Float16, Shape: []int64{3}, Data: []uint16{0x3c00, 0x7c00, 0xfc00}}, `[1,"Infinity","-Infinity"]`},
		{"uint16 is not half", understudy.Tensor{DType: understudy.Uint16, Shape: []int64{1}, Data: []uint16{0x3c00}}, `[15360]`},
		{"strings with quotes", understudy.Tensor{DType: understudy.String, Shape: []int64{2, 1}, Data: []string{`say "hi"`, `back\`}}, `["say \"hi\"","back\\"]`},
		{"bool", understudy.Tensor{DType: understudy.Bool, Shape: []int64{2}, Data: []bool{true, false}}, `[true,false]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := understudy.AppendJSONFlat([]byte("x="), &tt.t)
			if string(got) != "x="+tt.want {
				t.Errorf("got %s, want x=%s", got, tt.want)
			}
			if !json.Valid(got[2:]) {
				t.Errorf("%s is not valid JSON", got[2:])
			}
		})
	}
}

// Ensure data whose shape is given apart from it, as the Open Inference
// Protocol sends it, is read flat or nested and takes the client's shape.
func TestDecodeShaped(t *testing.T) {
	tests := []struct {
		name  string
		json  string
		shape []int64
		info  understudy.TensorInfo
		data  any
	}{
		{"flat to [2,3]", `[1,2,3,4,5,6]`, []int64{2, 3}, ti(understudy.Float32, -1, 3), []float32{1, 2, 3, 4, 5, 6}},
		{"nested [2,3]", `[[1,2,3],[4,5,6]]`, []int64{2, 3}, ti(understudy.Float32, -1, 3), []float32{1, 2, 3, 4, 5, 6}},
		{"flat rank 1", ` [7, -8] `, []int64{2}, ti(understudy.Int64, -1), []int64{7, -8}},
		{"rank 0 bare", `5`, []int64{}, ti(understudy.Int64), []int64{5}},
		{"rank 0 in array", `[5]`, []int64{}, ti(understudy.Int64), []int64{5}},
		{"strings", `["a", "b\"c"]`, []int64{1, 2}, ti(understudy.String, 1, 2), []string{"a", `b"c`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			shape := append([]int64{}, tt.shape...)
			got, err := understudy.DecodeShaped([]byte(tt.json), shape, tt.info)
			if err != nil {
				t.Fatalf("DecodeShaped: %v", err)
			}
			if !reflect.DeepEqual(got.Shape, tt.shape) {
				t.Errorf("shape = %#v, want %#v", got.Shape, tt.shape)
			}
			if !reflect.DeepEqual(got.Data, tt.data) {
				t.Errorf("data = %#v, want %#v", got.Data, tt.data)
			}
			if len(shape) > 0 {
				shape[0] = 99
				if got.Shape[0] == 99 {
					t.Error("the tensor's shape shares the caller's slice")
				}
			}
		})
	}
}

// Ensure data that does not hold the declared shape, or a shape the model
// does not take, is refused with both shapes in the message.
func TestDecodeShapedErrors(t *testing.T) {
	tests := []struct {
		name  string
		json  string
		shape []int64
		info  understudy.TensorInfo
		want  []string
	}{
		{"nested to another shape", `[[1,2],[3,4],[5,6]]`, []int64{2, 3}, ti(understudy.Float32, -1, 3), []string{`"x"`, "nested to shape [3,2]", `"shape" is [2,3]`}},
		{"flat wrong count", `[1,2,3,4,5]`, []int64{2, 3}, ti(understudy.Float32, -1, 3), []string{"[2,3] holds 6 elements", "data has 5"}},
		{"dimension rule", `[1,2,3,4,5,6,7,8]`, []int64{2, 4}, ti(understudy.Float32, -1, 3), []string{"dimension 1 is 4, want 3", "[2,4]", "[-1,3]"}},
		{"rank rule", `[1,2,3,4,5,6]`, []int64{6}, ti(understudy.Float32, -1, 3), []string{"rank 1", "want rank 2"}},
		{"zero dimension", `[]`, []int64{0, 3}, ti(understudy.Float32, -1, 3), []string{"[0,3]", "holds no elements"}},
		{"negative dimension", `[1,2,3]`, []int64{-1, 3}, ti(understudy.Float32, -1, 3), []string{"[-1,3]", "negative dimension at 0"}},
		{"huge shape", `[1]`, []int64{1 << 30, 1 << 30}, ti(understudy.Float32, -1, -1), []string{"too large"}},
		{"no data", "  ", []int64{2}, ti(understudy.Float32, -1), []string{`no "data" given`, "[2]"}},
		{"wrong element type", `["a"]`, []int64{1}, ti(understudy.Float32, -1), []string{"a string", "float32"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := understudy.DecodeShaped([]byte(tt.json), tt.shape, tt.info)
			assertInvalid(t, err, tt.want...)
		})
	}
}

// assertInvalid checks that err is the client's fault and that its message
// holds every one of want.
func assertInvalid(tb testing.TB, err error, want ...string) {
	tb.Helper()
	if err == nil {
		tb.Fatal("succeeded, want an error")
	}
	if got := understudy.ErrorCode(err); got != understudy.EINVALID {
		tb.Errorf("code = %q, want %q (%v)", got, understudy.EINVALID, err)
	}
	msg := understudy.ErrorMessage(err)
	for _, w := range want {
		if !strings.Contains(msg, w) {
			tb.Errorf("message %q does not contain %q", msg, w)
		}
	}
}
