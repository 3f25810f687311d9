package onnxbuild

import "fmt"

// Producer is the producer_name of the ready-made models, so a server's model listing shows
// where a test model came from.
const Producer = "understudy-onnxbuild"

// SlowWidth is the width of Slow's hidden matrix: one step is a [N,512]×[512,512] MatMul.
const SlowWidth = 512

func newModel(g Graph) *Model {
	return &Model{Graph: g, ProducerName: Producer, ModelVersion: 1}
}

func node(op string, inputs []string, outputs []string, attrs ...Attr) Node {
	return Node{Name: outputs[0] + "_" + op, OpType: op, Inputs: inputs, Outputs: outputs, Attrs: attrs}
}

// Identity echoes input "x" to output "y" so signature handling can be tested for every dtype
// and shape, with -1 for a dynamic dimension and empty dims for a rank-0 tensor.
func Identity(dt DType, dims []int64) *Model {
	info := func(name string) ValueInfo {
		return ValueInfo{Name: name, DType: dt, Dims: dims, Scalar: len(dims) == 0}
	}
	return newModel(Graph{
		Name:    "identity_" + dt.String(),
		Nodes:   []Node{node("Identity", []string{"x"}, []string{"y"})},
		Inputs:  []ValueInfo{info("x")},
		Outputs: []ValueInfo{info("y")},
	})
}

// Neg computes y = -x on x [-1,3] so tests see a computed value rather than an echo; it panics
// for types without a sign (unsigned, bool, string), which ONNX's Neg rejects.
func Neg(dt DType) *Model {
	switch dt {
	case Float, Double, Float16, Int8, Int16, Int32, Int64:
	default:
		panic(fmt.Sprintf("onnxbuild.Neg: %s has no negation", dt))
	}
	return newModel(Graph{
		Name:    "neg_" + dt.String(),
		Nodes:   []Node{node("Neg", []string{"x"}, []string{"y"})},
		Inputs:  []ValueInfo{{Name: "x", DType: dt, Dims: []int64{-1, 3}}},
		Outputs: []ValueInfo{{Name: "y", DType: dt, Dims: []int64{-1, 3}}},
	})
}

// DoubledRows computes y = Concat(x, x) along the first axis for x [-1,3]. Its output is
// declared [-1,3] like its input, but has twice as many rows as the batch: a signature that
// does not tell an output's size, as exporters often write.
func DoubledRows() *Model {
	return newModel(Graph{
		Name:    "doubled_rows",
		Nodes:   []Node{node("Concat", []string{"x", "x"}, []string{"y"}, AttrInt("axis", 0))},
		Inputs:  []ValueInfo{{Name: "x", DType: Float, Dims: []int64{-1, 3}}},
		Outputs: []ValueInfo{{Name: "y", DType: Float, Dims: []int64{-1, 3}}},
	})
}

// Not computes y = !x on a bool x [-1,3], the bool counterpart of Neg.
func Not() *Model {
	return newModel(Graph{
		Name:    "not_bool",
		Nodes:   []Node{node("Not", []string{"x"}, []string{"y"})},
		Inputs:  []ValueInfo{{Name: "x", DType: Bool, Dims: []int64{-1, 3}}},
		Outputs: []ValueInfo{{Name: "y", DType: Bool, Dims: []int64{-1, 3}}},
	})
}

// MultiIO has two inputs of different dtypes and three outputs, one of them rank 0, to test
// name-based binding: sum = a+a, b_doubled = b*2 and total = the sum of all of a.
func MultiIO() *Model {
	return newModel(Graph{
		Name: "multi_io",
		Nodes: []Node{
			node("Add", []string{"a", "a"}, []string{"sum"}),
			node("Mul", []string{"b", "two"}, []string{"b_doubled"}),
			// Opset 13+ ReduceSum takes axes as an input; leaving it out reduces every axis.
			node("ReduceSum", []string{"a"}, []string{"total"}, AttrInt("keepdims", 0)),
		},
		Inputs: []ValueInfo{
			{Name: "a", DType: Float, Dims: []int64{-1, 3}},
			{Name: "b", DType: Int64, Dims: []int64{-1, 2}},
		},
		Outputs: []ValueInfo{
			{Name: "sum", DType: Float, Dims: []int64{-1, 3}},
			{Name: "b_doubled", DType: Int64, Dims: []int64{-1, 2}},
			{Name: "total", DType: Float, Scalar: true},
		},
		Initializers: []Tensor{Int64Tensor("two", nil, []int64{2})},
	})
}

// Scalar reduces x [-1,4] to a rank-0 "total", the shape that needs a pre-allocated output.
func Scalar() *Model {
	return newModel(Graph{
		Name:    "scalar_total",
		Nodes:   []Node{node("ReduceSum", []string{"x"}, []string{"total"}, AttrInt("keepdims", 0))},
		Inputs:  []ValueInfo{{Name: "x", DType: Float, Dims: []int64{-1, 4}}},
		Outputs: []ValueInfo{{Name: "total", DType: Float, Scalar: true}},
	})
}

// FixedShape doubles x [2,3] with no dynamic dimension, to test rejection of a wrong fixed dim.
func FixedShape() *Model {
	return newModel(Graph{
		Name:         "fixed_shape",
		Nodes:        []Node{node("Mul", []string{"x", "two"}, []string{"y"})},
		Inputs:       []ValueInfo{{Name: "x", DType: Float, Dims: []int64{2, 3}}},
		Outputs:      []ValueInfo{{Name: "y", DType: Float, Dims: []int64{2, 3}}},
		Initializers: []Tensor{FloatTensor("two", nil, []float32{2})},
	})
}

// Slow maps x [-1,4] to y [-1,4] through a chain of steps [512,512] MatMuls, so a run takes
// about steps times one such MatMul and, being many nodes, can be terminated between them.
//
// The matrices are 0/1 permutations (embed, rotate by 4, fold back), so values neither grow nor
// decay into slow denormals, and y equals x exactly whatever steps is.
func Slow(steps int) *Model {
	if steps < 0 {
		panic(fmt.Sprintf("onnxbuild.Slow: steps %d, want >= 0", steps))
	}
	const w = SlowWidth
	embed := make([]float32, 4*w)
	for j := range 4 {
		embed[j*w+j] = 1
	}
	rotate := make([]float32, w*w)
	for i := range w {
		rotate[i*w+(i+4)%w] = 1
	}
	fold := make([]float32, w*4)
	for k := range w {
		fold[k*4+k%4] = 1
	}
	nodes := []Node{node("MatMul", []string{"x", "embed"}, []string{"h0"})}
	for i := range steps {
		nodes = append(nodes, node("MatMul",
			[]string{fmt.Sprintf("h%d", i), "rotate"}, []string{fmt.Sprintf("h%d", i+1)}))
	}
	nodes = append(nodes, node("MatMul", []string{fmt.Sprintf("h%d", steps), "fold"}, []string{"y"}))
	return newModel(Graph{
		Name:    fmt.Sprintf("slow_%d", steps),
		Nodes:   nodes,
		Inputs:  []ValueInfo{{Name: "x", DType: Float, Dims: []int64{-1, 4}}},
		Outputs: []ValueInfo{{Name: "y", DType: Float, Dims: []int64{-1, 4}}},
		Initializers: []Tensor{
			FloatTensor("embed", []int64{4, w}, embed),
			FloatTensor("rotate", []int64{w, w}, rotate),
			FloatTensor("fold", []int64{w, 4}, fold),
		},
	})
}

// MLP is RandomMLP(seed, in, hidden, classes) as a model named "mlp".
func MLP(seed int64, in int, hidden []int, classes int) *Model {
	return RandomMLP(seed, in, hidden, classes).Model("mlp")
}

// ZipMap turns x [-1,3] into "probs", a sequence of maps from class 0, 1, 2 to x's values,
// which is the non-tensor output that sklearn-onnx classifiers produce by default.
func ZipMap() *Model {
	m := newModel(Graph{
		Name: "zipmap",
		Nodes: []Node{{
			Name: "probs_ZipMap", OpType: "ZipMap", Domain: MLDomain,
			Inputs: []string{"x"}, Outputs: []string{"probs"},
			Attrs: []Attr{AttrInts("classlabels_int64s", 0, 1, 2)},
		}},
		Inputs:  []ValueInfo{{Name: "x", DType: Float, Dims: []int64{-1, 3}}},
		Outputs: []ValueInfo{{Name: "probs", DType: Float, MapKey: Int64, Sequence: true}},
	})
	m.Opsets = map[string]int64{MLDomain: 3}
	return m
}
