package onnxbuild_test

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/understudy-ml/understudy/pkg/onnxbuild"
)

// These tests check the ready-made models of models.go: that they validate
// and encode the same every time, and the properties the server's tests
// rely on.

// readyMade lists every ready-made model, for tests that check them all.
func readyMade() map[string]*onnxbuild.Model {
	models := map[string]*onnxbuild.Model{
		"not":         onnxbuild.Not(),
		"multi_io":    onnxbuild.MultiIO(),
		"scalar":      onnxbuild.Scalar(),
		"fixed_shape": onnxbuild.FixedShape(),
		"slow_0":      onnxbuild.Slow(0),
		"slow_3":      onnxbuild.Slow(3),
		"mlp":         onnxbuild.MLP(1, 4, []int{8}, 3),
		"zipmap":      onnxbuild.ZipMap(),
	}
	for _, dt := range onnxbuild.DTypes() {
		models["identity_"+dt.String()] = onnxbuild.Identity(dt, []int64{-1, 3})
		models["identity_rank0_"+dt.String()] = onnxbuild.Identity(dt, nil)
	}
	for _, dt := range []onnxbuild.DType{onnxbuild.Float, onnxbuild.Double, onnxbuild.Float16, onnxbuild.Int8, onnxbuild.Int16, onnxbuild.Int32, onnxbuild.Int64} {
		models["neg_"+dt.String()] = onnxbuild.Neg(dt)
	}
	return models
}

// Ensure every ready-made model passes validation and encodes to the same bytes every time.
func TestReadyMadeModels(t *testing.T) {
	first := readyMade()
	second := readyMade()
	for name, m := range first {
		t.Run(name, func(t *testing.T) {
			a, err := m.Marshal()
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			b, err := second[name].Marshal()
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			if !bytes.Equal(a, b) {
				t.Errorf("two builds encode differently")
			}
		})
	}
}

// Ensure MultiIO declares its three outputs with the dtypes and ranks the server tests rely on.
func TestMultiIOSignature(t *testing.T) {
	g := marshal(t, onnxbuild.MultiIO()).msg(t, fModelGraph)
	describe := func(vis []fields) []string {
		var out []string
		for _, vi := range vis {
			tt := vi.msg(t, fValueType).msg(t, fTypeTensor)
			out = append(out, vi.str(fValueName)+":"+onnxbuild.DType(tt.int(fTensorElem)).String()+dims(t, tt))
		}
		return out
	}
	if got, want := describe(g.msgs(t, fGraphIn)), []string{"a:float32[N,3]", "b:int64[N,2]"}; !reflect.DeepEqual(got, want) {
		t.Errorf("inputs = %v, want %v", got, want)
	}
	if got, want := describe(g.msgs(t, fGraphOut)), []string{"sum:float32[N,3]", "b_doubled:int64[N,2]", "total:float32[]"}; !reflect.DeepEqual(got, want) {
		t.Errorf("outputs = %v, want %v", got, want)
	}
}

// Ensure Neg refuses types that ONNX's Neg does not accept rather than write a model that
// will not load.
func TestNegUnsigned(t *testing.T) {
	for _, dt := range []onnxbuild.DType{onnxbuild.Uint8, onnxbuild.Uint64, onnxbuild.Bool, onnxbuild.String} {
		t.Run(dt.String(), func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("Neg(%s) did not panic", dt)
				}
			}()
			onnxbuild.Neg(dt)
		})
	}
}

// Ensure Slow's weights make y equal x, whatever the number of steps, by running its
// MatMul chain in Go.
func TestSlowIsIdentity(t *testing.T) {
	m := onnxbuild.Slow(5)
	if got, want := len(m.Graph.Nodes), 5+2; got != want {
		t.Fatalf("got %d nodes, want %d", got, want)
	}
	weights := map[string]onnxbuild.Tensor{}
	for _, w := range m.Graph.Initializers {
		weights[w.Name] = w
	}
	x := []float32{1.5, -2, 3.25, 1e6}
	values := map[string][]float32{"x": x}
	for _, n := range m.Graph.Nodes {
		if n.OpType != "MatMul" {
			t.Fatalf("node %q is %s, want MatMul", n.Name, n.OpType)
		}
		w := weights[n.Inputs[1]]
		in := values[n.Inputs[0]]
		rows, cols := int(w.Dims[0]), int(w.Dims[1])
		if len(in) != rows {
			t.Fatalf("node %q: input width %d, weight rows %d", n.Name, len(in), rows)
		}
		out := make([]float32, cols)
		for i := range rows {
			for j := range cols {
				out[j] += in[i] * w.Floats[i*cols+j]
			}
		}
		values[n.Outputs[0]] = out
	}
	if got, want := values["y"], x; !reflect.DeepEqual(got, want) {
		t.Errorf("y = %v, want %v", got, want)
	}
}
