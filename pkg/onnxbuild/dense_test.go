package onnxbuild_test

import (
	"math"
	"reflect"
	"testing"

	"github.com/understudy-ml/understudy/pkg/onnxbuild"
)

func closeTo(tb testing.TB, got, want []float32, tol float64) {
	tb.Helper()
	if len(got) != len(want) {
		tb.Fatalf("got %v, want %v", got, want)
	}
	for i := range got {
		if math.Abs(float64(got[i]-want[i])) > tol {
			tb.Errorf("got %v, want %v (±%g)", got, want, tol)
			return
		}
	}
}

// Ensure Predict matches networks small enough to work out by hand, including the tie rule.
func TestDensePredict(t *testing.T) {
	e := math.E
	tests := []struct {
		name       string
		net        onnxbuild.Dense
		x          [][]float32
		wantLabels []int64
		wantProbs  [][]float32
	}{
		{
			name: "linear with a tie goes to the lower class",
			net: onnxbuild.Dense{Layers: []onnxbuild.Layer{
				{W: [][]float32{{1, 0}, {0, 1}, {1, 1}}, B: []float32{0, 0, -1}},
			}},
			// logits [1, 2, 2]
			x:          [][]float32{{1, 2}},
			wantLabels: []int64{1},
			wantProbs:  [][]float32{{float32(1 / (1 + 2*e)), float32(e / (1 + 2*e)), float32(e / (1 + 2*e))}},
		},
		{
			name: "relu hidden layer",
			net: onnxbuild.Dense{Layers: []onnxbuild.Layer{
				{W: [][]float32{{1, -1}, {-1, 1}}, B: []float32{0, 0}, ReLU: true},
				{W: [][]float32{{1, 0}, {0, 1}, {0.5, 0.5}}, B: []float32{0, 1, 0}},
			}},
			// hidden relu([2, -2]) = [2, 0]; logits [2, 1, 1]; then hidden [0, 2]; logits [0, 3, 1]
			x:          [][]float32{{3, 1}, {1, 3}},
			wantLabels: []int64{0, 1},
			wantProbs: [][]float32{
				{float32(e / (e + 2)), float32(1 / (e + 2)), float32(1 / (e + 2))},
				{float32(1 / (1 + e*e*e + e)), float32(e * e * e / (1 + e*e*e + e)), float32(e / (1 + e*e*e + e))},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			labels, probs := tt.net.Predict(tt.x)
			if !reflect.DeepEqual(labels, tt.wantLabels) {
				t.Errorf("labels = %v, want %v", labels, tt.wantLabels)
			}
			for i := range probs {
				closeTo(t, probs[i], tt.wantProbs[i], 1e-7)
			}
		})
	}
}

// Ensure the ONNX graph carries the weights as Gemm's transposed B and the classifier
// signature (label, probabilities).
func TestDenseModel(t *testing.T) {
	net := onnxbuild.Dense{Layers: []onnxbuild.Layer{
		{W: [][]float32{{1, 2}, {3, 4}, {5, 6}}, B: []float32{0.1, 0.2, 0.3}, ReLU: true},
		{W: [][]float32{{1, 0, -1}, {0, 1, 0}}, B: []float32{-1, 1}},
	}}
	g := marshal(t, net.Model("tiny")).msg(t, fModelGraph)
	if got, want := g.str(fGraphName), "tiny"; got != want {
		t.Errorf("graph name = %q, want %q", got, want)
	}
	inits := map[string]fields{}
	for _, f := range g.msgs(t, fGraphInit) {
		inits[f.str(fTensorName)] = f
	}
	if got, want := inits["layer0.weight"].ints(t, fTensorDims), []int64{3, 2}; !reflect.DeepEqual(got, want) {
		t.Errorf("layer0.weight dims = %v, want %v", got, want)
	}
	if got, want := inits["layer0.weight"].floats(t, fTensorFloats), []float32{1, 2, 3, 4, 5, 6}; !reflect.DeepEqual(got, want) {
		t.Errorf("layer0.weight = %v, want %v", got, want)
	}
	if got, want := inits["layer1.bias"].floats(t, fTensorFloats), []float32{-1, 1}; !reflect.DeepEqual(got, want) {
		t.Errorf("layer1.bias = %v, want %v", got, want)
	}
	var ops []string
	for _, n := range g.msgs(t, fGraphNode) {
		ops = append(ops, n.str(fNodeOp))
		if n.str(fNodeOp) == "Gemm" {
			a := n.msg(t, fNodeAttr)
			if a.str(fAttrName) != "transB" || a.int(fAttrI) != 1 {
				t.Errorf("Gemm %q attribute %q=%d, want transB=1", n.str(fNodeName), a.str(fAttrName), a.int(fAttrI))
			}
		}
	}
	if got, want := ops, []string{"Gemm", "Relu", "Gemm", "ArgMax", "Softmax"}; !reflect.DeepEqual(got, want) {
		t.Errorf("ops = %v, want %v", got, want)
	}
	var outs []string
	for _, o := range g.msgs(t, fGraphOut) {
		tt := o.msg(t, fValueType).msg(t, fTypeTensor)
		outs = append(outs, o.str(fValueName)+":"+onnxbuild.DType(tt.int(fTensorElem)).String()+dims(t, tt))
	}
	if got, want := outs, []string{"label:int64[N]", "probabilities:float32[N,2]"}; !reflect.DeepEqual(got, want) {
		t.Errorf("outputs = %v, want %v", got, want)
	}
}

// Ensure RandomMLP depends only on its seed and has the requested layer sizes.
func TestRandomMLP(t *testing.T) {
	a := onnxbuild.RandomMLP(7, 5, []int{6, 4}, 3)
	b := onnxbuild.RandomMLP(7, 5, []int{6, 4}, 3)
	c := onnxbuild.RandomMLP(8, 5, []int{6, 4}, 3)
	if !reflect.DeepEqual(a, b) {
		t.Errorf("same seed gave different networks")
	}
	if reflect.DeepEqual(a, c) {
		t.Errorf("different seeds gave the same network")
	}
	if got, want := a.Inputs(), 5; got != want {
		t.Errorf("Inputs() = %d, want %d", got, want)
	}
	if got, want := a.Classes(), 3; got != want {
		t.Errorf("Classes() = %d, want %d", got, want)
	}
	var shape [][2]int
	var relu []bool
	for _, l := range a.Layers {
		shape = append(shape, [2]int{len(l.W), len(l.W[0])})
		relu = append(relu, l.ReLU)
	}
	if got, want := shape, [][2]int{{6, 5}, {4, 6}, {3, 4}}; !reflect.DeepEqual(got, want) {
		t.Errorf("layer shapes = %v, want %v", got, want)
	}
	if got, want := relu, []bool{true, true, false}; !reflect.DeepEqual(got, want) {
		t.Errorf("relu = %v, want %v", got, want)
	}
	labels, probs := a.Predict([][]float32{{1, 2, 3, 4, 5}})
	if labels[0] < 0 || labels[0] >= 3 {
		t.Errorf("label %d out of range", labels[0])
	}
	var sum float64
	for _, p := range probs[0] {
		sum += float64(p)
	}
	if math.Abs(sum-1) > 1e-6 {
		t.Errorf("probabilities sum to %v, want 1", sum)
	}
}

// Ensure mismatched layer shapes fail when the model is built, not when a runtime loads it.
func TestDenseModelRejectsMismatchedLayers(t *testing.T) {
	net := onnxbuild.Dense{Layers: []onnxbuild.Layer{
		{W: [][]float32{{1, 2}, {3, 4}}, B: []float32{0, 0}},
		{W: [][]float32{{1, 2, 3}}, B: []float32{0}},
	}}
	defer func() {
		if recover() == nil {
			t.Errorf("Model did not panic")
		}
	}()
	net.Model("bad")
}
