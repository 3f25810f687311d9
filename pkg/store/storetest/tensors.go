package storetest

import (
	"math"
	"reflect"
	"testing"

	"github.com/understudy-ml/understudy/pkg/understudy"
)

// TensorsEqual fails the test unless two tensor maps hold the same names,
// types, shapes and values, taking NaN as equal to NaN: for tests of what a
// backend stores and reads back.
func TensorsEqual(tb testing.TB, got, want map[string]*understudy.Tensor) {
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
