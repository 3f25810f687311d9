package store_test

import (
	"math"
	"reflect"
	"testing"

	"github.com/understudy-ml/understudy/pkg/store"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

func tensor(dt understudy.DType, shape []int64, data any) *understudy.Tensor {
	return &understudy.Tensor{DType: dt, Shape: shape, Data: data}
}

// tensorsEqual compares tensor maps, taking NaN as equal to NaN.
func tensorsEqual(tb testing.TB, got, want map[string]*understudy.Tensor) {
	tb.Helper()
	if len(got) != len(want) {
		tb.Fatalf("got %d tensors, want %d", len(got), len(want))
	}
	for name, w := range want {
		g, ok := got[name]
		if !ok {
			tb.Fatalf("tensor %q missing", name)
		}
		if g.DType != w.DType || !reflect.DeepEqual(g.Shape, w.Shape) {
			tb.Fatalf("tensor %q: got %v %v, want %v %v", name, g.DType, g.Shape, w.DType, w.Shape)
		}
		if reflect.TypeOf(g.Data) != reflect.TypeOf(w.Data) {
			tb.Fatalf("tensor %q: data %T, want %T", name, g.Data, w.Data)
		}
		if w.DType.IsFloat() {
			gf, wf := g.Float64s(), w.Float64s()
			for i := range wf {
				if gf[i] != wf[i] && !(math.IsNaN(gf[i]) && math.IsNaN(wf[i])) {
					tb.Fatalf("tensor %q element %d: got %v, want %v", name, i, gf[i], wf[i])
				}
			}
		} else if !reflect.DeepEqual(g.Data, w.Data) {
			tb.Fatalf("tensor %q: got %#v, want %#v", name, g.Data, w.Data)
		}
	}
}

// Ensure every element type, shape and special float survives the codec.
func TestTensorCodec(t *testing.T) {
	tests := []struct {
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
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			enc := store.EncodeTensors(tt.m)
			if tt.json != "" && string(enc) != tt.json {
				t.Errorf("EncodeTensors = %s, want %s", enc, tt.json)
			}
			got, err := store.DecodeTensors(enc)
			if err != nil {
				t.Fatalf("DecodeTensors(%s): %v", enc, err)
			}
			tensorsEqual(t, got, tt.m)
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
