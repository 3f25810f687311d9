package store_test

import (
	"math"
	"testing"

	"github.com/understudy-ml/understudy/pkg/store"
	"github.com/understudy-ml/understudy/pkg/store/storetest"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

func tensor(dt understudy.DType, shape []int64, data any) *understudy.Tensor {
	return &understudy.Tensor{DType: dt, Shape: shape, Data: data}
}

// codecCases are tensor maps of every element type, shape and special
// float, with their JSON form when it is pinned.
var codecCases = []struct {
	name string
	m    map[string]*understudy.Tensor
	json string // expected encoding, when given
}{
	{"float32 matrix", map[string]*understudy.Tensor{"x": tensor(understudy.Float32, []int64{2, 2}, []float32{1, 2.5, -3, 0.1})},
		`{"x":{"dtype":"float32","shape":[2,2],"data":[[1,2.5],[-3,0.1]]}}`},
	{"sorted names", map[string]*understudy.Tensor{
		"b": tensor(understudy.Int64, []int64{1}, []int64{7}),
		"a": tensor(understudy.Bool, []int64{2}, []bool{true, false}),
	}, `{"a":{"dtype":"bool","shape":[2],"data":[true,false]},"b":{"dtype":"int64","shape":[1],"data":[7]}}`},
	{"scalar", map[string]*understudy.Tensor{"s": tensor(understudy.Float64, []int64{}, []float64{math.Pi})}, ""},
	{"strings", map[string]*understudy.Tensor{`we"ird`: tensor(understudy.String, []int64{1, 2}, []string{"é\"\n", ""})}, ""},
	{"float16", map[string]*understudy.Tensor{"h": tensor(understudy.Float16, []int64{3}, []uint16{0x3c00, 0x3800, 0xc000})}, ""},
	{"nan and infinities", map[string]*understudy.Tensor{"f": tensor(understudy.Float32, []int64{1, 4},
		[]float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)), 1.5})}, ""},
	{"half nan", map[string]*understudy.Tensor{"h": tensor(understudy.Float16, []int64{2}, []uint16{0x7e00, 0x3c00})}, ""},
	{"empty dimension", map[string]*understudy.Tensor{"e": tensor(understudy.Float32, []int64{0, 3}, []float32{})},
		`{"e":{"dtype":"float32","shape":[0,3],"data":[]}}`},
	{"every integer", map[string]*understudy.Tensor{
		"i8": tensor(understudy.Int8, []int64{2}, []int8{-128, 127}), "u8": tensor(understudy.Uint8, []int64{1}, []uint8{255}),
		"i16": tensor(understudy.Int16, []int64{1}, []int16{-32768}), "u16": tensor(understudy.Uint16, []int64{1}, []uint16{65535}),
		"i32": tensor(understudy.Int32, []int64{1}, []int32{math.MinInt32}), "u32": tensor(understudy.Uint32, []int64{1}, []uint32{math.MaxUint32}),
		"i64": tensor(understudy.Int64, []int64{1}, []int64{math.MinInt64}), "u64": tensor(understudy.Uint64, []int64{1}, []uint64{math.MaxUint64}),
	}, ""},
	{"empty map", map[string]*understudy.Tensor{}, `{}`},
}

// Ensure every element type, shape and special float survives the codec.
func TestTensorCodec(t *testing.T) {
	for _, tt := range codecCases {
		t.Run(tt.name, func(t *testing.T) {
			enc := store.EncodeTensors(tt.m)
			if tt.json != "" && string(enc) != tt.json {
				t.Errorf("EncodeTensors = %s, want %s", enc, tt.json)
			}
			got, err := store.DecodeTensors(enc)
			if err != nil {
				t.Fatalf("DecodeTensors(%s): %v", enc, err)
			}
			storetest.TensorsEqual(t, got, tt.m)
		})
	}
}

// Ensure a tensor whose data does not match its shape is stored without
// crashing the caller.
func TestEncodeTensorsMalformed(t *testing.T) {
	got := string(store.EncodeTensors(map[string]*understudy.Tensor{
		"short": tensor(understudy.Float32, []int64{1, 4}, []float32{1}),
		"nil":   nil,
	}))
	want := `{"nil":null,"short":{"dtype":"float32","shape":[1,4],"data":null}}`
	if got != want {
		t.Errorf("EncodeTensors = %s, want %s", got, want)
	}
}

// Ensure the binary stored form keeps every case exactly, reads back as the
// same JSON as EncodeTensors, and that JSON rows stored before it still
// decode through the same function.
func TestStoredTensors(t *testing.T) {
	for _, tt := range codecCases {
		t.Run(tt.name, func(t *testing.T) {
			bin := store.EncodeStoredTensors(tt.m)
			if !store.IsStoredBinary(bin) || len(bin) > store.StoredTensorsSize(tt.m) {
				t.Fatalf("EncodeStoredTensors = %x: not binary, or over its bound %d", bin, store.StoredTensorsSize(tt.m))
			}
			got, err := store.DecodeTensors(bin)
			if err != nil {
				t.Fatalf("DecodeTensors(%x): %v", bin, err)
			}
			storetest.TensorsEqual(t, got, tt.m)
			old := store.EncodeTensors(tt.m)
			j, err := store.TensorsJSON(bin)
			if err != nil || string(j) != string(old) {
				t.Errorf("TensorsJSON(binary) = %s, %v; want %s", j, err, old)
			}
			// An old row: JSON, which TensorsJSON hands back as it is.
			if j, err := store.TensorsJSON(old); err != nil || string(j) != string(old) {
				t.Errorf("TensorsJSON(JSON) = %s, %v; want it unchanged", j, err)
			}
			fromOld, err := store.DecodeTensors(old)
			if err != nil {
				t.Fatalf("DecodeTensors(old JSON row): %v", err)
			}
			storetest.TensorsEqual(t, fromOld, tt.m)
		})
	}
}

// Ensure the layout documented in the codec is the one written, byte for
// byte, so that another backend can rely on it.
func TestStoredTensorsLayout(t *testing.T) {
	got := store.EncodeStoredTensors(map[string]*understudy.Tensor{
		"x": tensor(understudy.Float32, []int64{1, 2}, []float32{1, -2}),
		"s": tensor(understudy.String, []int64{2}, []string{"ab", ""}),
		"n": nil,
		"b": tensor(understudy.Int64, []int64{1, 4}, []int64{1}), // data does not match the shape
	})
	want := []byte{0xB1, 4,
		1, 'b', 7, 0, 2, 2, 8, // int64, no data, rank 2, dims 1 and 4 (zigzag)
		1, 'n', 0, // nil
		1, 's', 8, 1, 1, 4, 2, 'a', 'b', 0, // string [2]: "ab", ""
		1, 'x', 1, 1, 2, 2, 4, 0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0, // float32 [1,2]: 1, -2
	}
	if string(got) != string(want) {
		t.Errorf("EncodeStoredTensors =\n%x, want\n%x", got, want)
	}
	m, err := store.DecodeTensors(got)
	if err != nil {
		t.Fatal(err)
	}
	if m["n"] != nil || m["b"].Data != nil || m["b"].Shape[1] != 4 {
		t.Errorf("decoded %+v", m)
	}
}

// Ensure corrupt or truncated binary rows are errors, never panics or huge
// allocations.
func TestStoredTensorsCorrupt(t *testing.T) {
	good := store.EncodeStoredTensors(map[string]*understudy.Tensor{
		"x": tensor(understudy.Float32, []int64{2, 2}, []float32{1, 2, 3, 4}),
		"s": tensor(understudy.String, []int64{1}, []string{"abc"}),
	})
	for i := 1; i < len(good); i++ {
		if _, err := store.DecodeTensors(good[:i]); err == nil {
			t.Errorf("DecodeTensors(first %d of %d bytes) succeeded", i, len(good))
		}
	}
	for _, bad := range [][]byte{
		{0xB1, 0xff, 0xff, 0xff, 0xff, 0x0f},                     // 2^32 tensors
		{0xB1, 1, 1, 'x', 1, 1, 1, 0xfe, 0xff, 0xff, 0xff, 0x0f}, // a huge dimension
		{0xB1, 1, 1, 'x', 8, 1, 1, 0xfe, 0xff, 0xff, 0x0f},       // a huge string tensor
		{0xB1, 1, 1, 'x', 99, 1, 0},                              // unknown type
		{0xB1, 1, 1, 'x', 1, 1, 1, 3},                            // negative dimension
		append(append([]byte{}, good...), 0),                     // trailing byte
	} {
		if _, err := store.DecodeTensors(bad); err == nil {
			t.Errorf("DecodeTensors(%x) succeeded", bad)
		}
	}
}

// Ensure StoredInputs gives readers the JSON, its hash and its size, from
// a binary row (hash left empty by the writer), an old JSON row, and a row
// over the cap.
func TestStoredInputs(t *testing.T) {
	m := map[string]*understudy.Tensor{"input": tensor(understudy.Float32, []int64{1, 4}, []float32{5.1, 3.5, 1.4, 0.2})}
	j := store.EncodeTensors(m)
	sum := store.InputsDigest(j)
	for _, tt := range []struct {
		name string
		raw  []byte
		sha  string
		size int
		want string
	}{
		{"binary", store.EncodeStoredTensors(m), "", 33, string(j)},
		{"old JSON", j, sum, len(j), string(j)},
		{"over the cap", nil, sum, len(j), ""},
	} {
		in, gotSum, n, err := store.StoredInputs(tt.raw, tt.sha, tt.size)
		if err != nil || in != tt.want || gotSum != sum || n != len(j) {
			t.Errorf("%s: StoredInputs = %q, %s, %d, %v; want %q, %s, %d", tt.name, in, gotSum, n, err, tt.want, sum, len(j))
		}
	}
}

func BenchmarkStoredTensors(b *testing.B) {
	x := make([]float32, 512)
	for i := range x {
		x[i] = float32(i%17) / 17
	}
	m := map[string]*understudy.Tensor{"input": tensor(understudy.Float32, []int64{1, 512}, x)}
	b.Run("binary", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = store.EncodeStoredTensors(m)
		}
	})
	b.Run("json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = store.EncodeTensors(m)
		}
	})
}
