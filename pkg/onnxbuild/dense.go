package onnxbuild

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// Layer is one fully connected layer, act(W·x + B), with W stored [out][in] like Gemm's
// transposed B so rows read as one output unit each.
type Layer struct {
	W    [][]float32
	B    []float32
	ReLU bool
}

// Dense is a feed-forward classifier kept as plain weights, so the same network can be written
// as ONNX and evaluated in Go to check what a runtime returns.
type Dense struct {
	Layers []Layer
}

// LargeMLP is the benchmark model, RandomMLP(1, 64, []int{1024, 1024, 1024, 1024}, 10): about
// 13 MB of weights, sized so one single-row run takes roughly 0.4–0.5 ms on one thread of the
// 2-core project machine, long enough for serving overhead not to dominate a benchmark. Its 64
// features are a wide tabular row; every input float costs about 0.1 µs of JSON parsing alone.
func LargeMLP() Dense {
	return RandomMLP(1, LargeMLPInputs, []int{1024, 1024, 1024, 1024}, 10)
}

// LargeMLPInputs is the input width of LargeMLP.
const LargeMLPInputs = 64

// RandomMLP draws a ReLU network in→hidden…→classes from seed, with He-uniform weights so the
// logits stay in a range where softmax is neither flat nor saturated.
func RandomMLP(seed int64, in int, hidden []int, classes int) Dense {
	r := rand.New(rand.NewPCG(uint64(seed), 0x756e646572))
	sizes := append(append([]int{in}, hidden...), classes)
	var d Dense
	for l := 1; l < len(sizes); l++ {
		fanIn, fanOut := sizes[l-1], sizes[l]
		limit := math.Sqrt(6 / float64(fanIn))
		layer := Layer{W: make([][]float32, fanOut), B: make([]float32, fanOut), ReLU: l < len(sizes)-1}
		for o := range fanOut {
			layer.W[o] = make([]float32, fanIn)
			for i := range fanIn {
				layer.W[o][i] = float32((2*r.Float64() - 1) * limit)
			}
			layer.B[o] = float32((2*r.Float64() - 1) * 0.1)
		}
		d.Layers = append(d.Layers, layer)
	}
	return d
}

// Inputs is the number of input features the first layer expects.
func (d Dense) Inputs() int {
	if len(d.Layers) == 0 || len(d.Layers[0].W) == 0 {
		return 0
	}
	return len(d.Layers[0].W[0])
}

// Classes is the number of outputs of the last layer.
func (d Dense) Classes() int {
	if len(d.Layers) == 0 {
		return 0
	}
	return len(d.Layers[len(d.Layers)-1].W)
}

// check panics on ragged or mismatched weights, which would otherwise only show up as a
// runtime's shape error when the model is loaded.
func (d Dense) check() {
	if len(d.Layers) == 0 {
		panic("onnxbuild.Dense: no layers")
	}
	in := d.Inputs()
	for l, layer := range d.Layers {
		if len(layer.W) == 0 || len(layer.B) != len(layer.W) {
			panic(fmt.Sprintf("onnxbuild.Dense: layer %d has %d rows and %d biases", l, len(layer.W), len(layer.B)))
		}
		for o, row := range layer.W {
			if len(row) != in {
				panic(fmt.Sprintf("onnxbuild.Dense: layer %d row %d has %d weights, want %d", l, o, len(row), in))
			}
		}
		in = len(layer.W)
	}
}

// Model writes the network as ONNX: input "input" float32 [-1,in], outputs "label" int64 [-1]
// (ArgMax of the logits) and "probabilities" float32 [-1,classes] (Softmax), the signature
// sklearn-onnx gives classifiers without ZipMap. It panics if the layer shapes do not chain.
func (d Dense) Model(name string) *Model {
	d.check()
	var (
		nodes []Node
		inits []Tensor
		prev  = "input"
	)
	for l, layer := range d.Layers {
		out, in := len(layer.W), len(layer.W[0])
		w := make([]float32, 0, out*in)
		for _, row := range layer.W {
			w = append(w, row...)
		}
		wName, bName := fmt.Sprintf("layer%d.weight", l), fmt.Sprintf("layer%d.bias", l)
		inits = append(inits,
			FloatTensor(wName, []int64{int64(out), int64(in)}, w),
			FloatTensor(bName, []int64{int64(out)}, append([]float32(nil), layer.B...)))
		gemm := fmt.Sprintf("layer%d.gemm", l)
		if l == len(d.Layers)-1 {
			gemm = "logits"
		}
		nodes = append(nodes, node("Gemm", []string{prev, wName, bName}, []string{gemm}, AttrInt("transB", 1)))
		prev = gemm
		if layer.ReLU {
			relu := fmt.Sprintf("layer%d.relu", l)
			nodes = append(nodes, node("Relu", []string{prev}, []string{relu}))
			prev = relu
		}
	}
	nodes = append(nodes,
		node("ArgMax", []string{prev}, []string{"label"}, AttrInt("axis", 1), AttrInt("keepdims", 0)),
		node("Softmax", []string{prev}, []string{"probabilities"}, AttrInt("axis", 1)))
	return newModel(Graph{
		Name:         name,
		Nodes:        nodes,
		Inputs:       []ValueInfo{{Name: "input", DType: Float, Dims: []int64{-1, int64(d.Inputs())}}},
		Outputs:      []ValueInfo{{Name: "label", DType: Int64, Dims: []int64{-1}}, {Name: "probabilities", DType: Float, Dims: []int64{-1, int64(d.Classes())}}},
		Initializers: inits,
	})
}

// Predict evaluates the network in Go, in float64 from the float32 weights, giving what a
// runtime should return up to float32 rounding; ties go to the lowest class, as ArgMax does.
func (d Dense) Predict(x [][]float32) (labels []int64, probs [][]float32) {
	d.check()
	labels = make([]int64, len(x))
	probs = make([][]float32, len(x))
	for n, row := range x {
		if len(row) != d.Inputs() {
			panic(fmt.Sprintf("onnxbuild.Dense.Predict: row %d has %d features, want %d", n, len(row), d.Inputs()))
		}
		h := make([]float64, len(row))
		for i, v := range row {
			h[i] = float64(v)
		}
		for _, layer := range d.Layers {
			next := make([]float64, len(layer.W))
			for o, w := range layer.W {
				s := float64(layer.B[o])
				for i, wi := range w {
					s += float64(wi) * h[i]
				}
				if layer.ReLU && s < 0 {
					s = 0
				}
				next[o] = s
			}
			h = next
		}
		best := 0
		for k, v := range h {
			if v > h[best] {
				best = k
			}
		}
		labels[n] = int64(best)
		probs[n] = softmax32(h)
	}
	return labels, probs
}

func softmax32(logits []float64) []float32 {
	hi := math.Inf(-1)
	for _, v := range logits {
		hi = max(hi, v)
	}
	var sum float64
	e := make([]float64, len(logits))
	for k, v := range logits {
		e[k] = math.Exp(v - hi)
		sum += e[k]
	}
	p := make([]float32, len(logits))
	for k := range e {
		p[k] = float32(e[k] / sum)
	}
	return p
}
