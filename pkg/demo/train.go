package demo

import (
	"math"
	"math/rand/v2"

	"github.com/understudy-ml/understudy/pkg/onnxbuild"
)

// TrainConfig sets up full-batch Adam training of a softmax classifier.
type TrainConfig struct {
	// Features are the columns the model may use; the others get zero weight, so the exported
	// model still takes every column as input.
	Features []int
	// Hidden lists the ReLU layer widths; none gives multinomial logistic regression.
	Hidden       []int
	Epochs       int
	LearningRate float64
	L2           float64 // penalty on weights, not biases
	Seed         uint64  // initial weights
}

type layer64 struct {
	w    [][]float64 // [out][in]
	b    []float64
	relu bool
}

// Train fits a classifier on standardised features and folds the standardisation into the
// first layer, so the returned network reads raw measurements as the ONNX model will.
func Train(d Dataset, cfg TrainConfig) onnxbuild.Dense {
	x := selectColumns(d.X, cfg.Features)
	mean, std := meanStd(x)
	z := make([][]float64, len(x))
	for i, row := range x {
		z[i] = make([]float64, len(row))
		for j, v := range row {
			z[i][j] = (v - mean[j]) / std[j]
		}
	}
	layers := fit(z, d.Y, len(d.Classes), cfg)

	// w·((x-mean)/std) + b = (w/std)·x + (b - Σ w·mean/std), spread over all input columns.
	first := layers[0]
	nIn := len(d.Features)
	dense := onnxbuild.Dense{}
	for l, ly := range layers {
		out := onnxbuild.Layer{W: make([][]float32, len(ly.w)), B: make([]float32, len(ly.b)), ReLU: ly.relu}
		for o := range ly.w {
			if l == 0 {
				out.W[o] = make([]float32, nIn)
				bias := first.b[o]
				for k, col := range cfg.Features {
					out.W[o][col] = float32(first.w[o][k] / std[k])
					bias -= first.w[o][k] * mean[k] / std[k]
				}
				out.B[o] = float32(bias)
				continue
			}
			out.W[o] = make([]float32, len(ly.w[o]))
			for i, v := range ly.w[o] {
				out.W[o][i] = float32(v)
			}
			out.B[o] = float32(ly.b[o])
		}
		dense.Layers = append(dense.Layers, out)
	}
	return dense
}

func selectColumns(x [][]float64, cols []int) [][]float64 {
	out := make([][]float64, len(x))
	for i, row := range x {
		out[i] = make([]float64, len(cols))
		for k, c := range cols {
			out[i][k] = row[c]
		}
	}
	return out
}

func meanStd(x [][]float64) (mean, std []float64) {
	nf := len(x[0])
	mean, std = make([]float64, nf), make([]float64, nf)
	for _, row := range x {
		for j, v := range row {
			mean[j] += v
		}
	}
	for j := range mean {
		mean[j] /= float64(len(x))
	}
	for _, row := range x {
		for j, v := range row {
			std[j] += (v - mean[j]) * (v - mean[j])
		}
	}
	for j := range std {
		std[j] = math.Sqrt(std[j] / float64(len(x)))
		if std[j] == 0 {
			std[j] = 1
		}
	}
	return mean, std
}

// fit runs full-batch Adam on mean cross-entropy; plain loops in a fixed order keep the result
// bit-identical from run to run.
func fit(x [][]float64, y []int, classes int, cfg TrainConfig) []layer64 {
	r := rand.New(rand.NewPCG(cfg.Seed, 0x747261696e))
	sizes := append(append([]int{len(x[0])}, cfg.Hidden...), classes)
	layers := make([]layer64, len(sizes)-1)
	for l := range layers {
		fanIn, fanOut := sizes[l], sizes[l+1]
		limit := math.Sqrt(6 / float64(fanIn))
		layers[l] = layer64{w: matrix(fanOut, fanIn), b: make([]float64, fanOut), relu: l < len(layers)-1}
		for o := range fanOut {
			for i := range fanIn {
				layers[l].w[o][i] = (2*r.Float64() - 1) * limit
			}
		}
	}
	type moments struct {
		mw, vw [][]float64
		mb, vb []float64
	}
	mom := make([]moments, len(layers))
	grads := make([]layer64, len(layers))
	for l, ly := range layers {
		out, in := len(ly.w), len(ly.w[0])
		mom[l] = moments{matrix(out, in), matrix(out, in), make([]float64, out), make([]float64, out)}
		grads[l] = layer64{w: matrix(out, in), b: make([]float64, out)}
	}
	const beta1, beta2, eps = 0.9, 0.999, 1e-8
	n := float64(len(x))
	acts := make([][]float64, len(layers)+1)
	for epoch := 1; epoch <= cfg.Epochs; epoch++ {
		for l := range grads {
			zero(grads[l].w)
			clear(grads[l].b)
		}
		for i, row := range x {
			acts[0] = row
			for l, ly := range layers {
				acts[l+1] = forward(ly, acts[l])
			}
			// Softmax cross-entropy gradient with respect to the logits is p - onehot(y).
			delta := softmax(acts[len(layers)])
			delta[y[i]] -= 1
			for l := len(layers) - 1; l >= 0; l-- {
				g, in := grads[l], acts[l]
				for o, d := range delta {
					g.b[o] += d / n
					for k, a := range in {
						g.w[o][k] += d * a / n
					}
				}
				if l == 0 {
					break
				}
				prev := make([]float64, len(in))
				for o, d := range delta {
					for k := range prev {
						prev[k] += d * layers[l].w[o][k]
					}
				}
				for k := range prev {
					if in[k] <= 0 { // ReLU'(z) is 0 where the activation was clipped
						prev[k] = 0
					}
				}
				delta = prev
			}
		}
		c1 := 1 - math.Pow(beta1, float64(epoch))
		c2 := 1 - math.Pow(beta2, float64(epoch))
		step := func(p, g float64, m, v *float64) float64 {
			*m = beta1**m + (1-beta1)*g
			*v = beta2**v + (1-beta2)*g*g
			return p - cfg.LearningRate*(*m/c1)/(math.Sqrt(*v/c2)+eps)
		}
		for l, ly := range layers {
			for o := range ly.w {
				for k := range ly.w[o] {
					g := grads[l].w[o][k] + cfg.L2*ly.w[o][k]
					ly.w[o][k] = step(ly.w[o][k], g, &mom[l].mw[o][k], &mom[l].vw[o][k])
				}
				ly.b[o] = step(ly.b[o], grads[l].b[o], &mom[l].mb[o], &mom[l].vb[o])
			}
		}
	}
	return layers
}

func forward(ly layer64, in []float64) []float64 {
	out := make([]float64, len(ly.w))
	for o, w := range ly.w {
		s := ly.b[o]
		for k, v := range w {
			s += v * in[k]
		}
		if ly.relu && s < 0 {
			s = 0
		}
		out[o] = s
	}
	return out
}

func softmax(logits []float64) []float64 {
	hi := math.Inf(-1)
	for _, v := range logits {
		hi = max(hi, v)
	}
	p := make([]float64, len(logits))
	var sum float64
	for k, v := range logits {
		p[k] = math.Exp(v - hi)
		sum += p[k]
	}
	for k := range p {
		p[k] /= sum
	}
	return p
}

func matrix(rows, cols int) [][]float64 {
	m := make([][]float64, rows)
	for i := range m {
		m[i] = make([]float64, cols)
	}
	return m
}

func zero(m [][]float64) {
	for _, row := range m {
		clear(row)
	}
}

// Accuracy is the share of rows of d that net labels correctly, computed in float32 as the
// ONNX model would.
func Accuracy(net onnxbuild.Dense, d Dataset) float64 {
	labels, _ := net.Predict(d.X32())
	correct := 0
	for i, l := range labels {
		if int(l) == d.Y[i] {
			correct++
		}
	}
	return float64(correct) / float64(d.Len())
}

// Disagreement is the share of rows of d on which a and b predict different labels.
func Disagreement(a, b onnxbuild.Dense, d Dataset) float64 {
	la, _ := a.Predict(d.X32())
	lb, _ := b.Predict(d.X32())
	diff := 0
	for i := range la {
		if la[i] != lb[i] {
			diff++
		}
	}
	return float64(diff) / float64(d.Len())
}
