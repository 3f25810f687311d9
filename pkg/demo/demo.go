package demo

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/understudy-ml/understudy/pkg/onnxbuild"
)

// Producer is the producer_name written into the demo models.
const Producer = "understudy-mkdemo"

// Seed drives the split and the weight initialisation; changing it changes every demo file.
const Seed = 20240601

// HoldoutFraction is the share of each class kept out of training for evaluation and replay.
const HoldoutFraction = 0.3

// V1Config trains the weak primary: logistic regression that sees only the sepal measurements,
// which separate setosa but confuse versicolor with virginica.
var V1Config = TrainConfig{Features: []int{0, 1}, Epochs: 500, LearningRate: 0.05, L2: 1e-3, Seed: Seed}

// V2Config trains the stronger shadow: a 4→8→3 ReLU network on all four measurements.
var V2Config = TrainConfig{Features: []int{0, 1, 2, 3}, Hidden: []int{8}, Epochs: 1000, LearningRate: 0.01, L2: 1e-4, Seed: Seed}

// Demo holds the split, both trained networks and how they score on the held-out rows.
type Demo struct {
	Train, Holdout Dataset
	V1, V2         onnxbuild.Dense
	V1Accuracy     float64
	V2Accuracy     float64
	Disagreement   float64 // share of held-out rows where v1 and v2 differ
}

// Build splits d and trains both versions; the same data always gives the same Demo.
func Build(d Dataset) Demo {
	train, holdout := Split(d, Seed, HoldoutFraction)
	v1, v2 := Train(train, V1Config), Train(train, V2Config)
	return Demo{
		Train: train, Holdout: holdout, V1: v1, V2: v2,
		V1Accuracy:   Accuracy(v1, holdout),
		V2Accuracy:   Accuracy(v2, holdout),
		Disagreement: Disagreement(v1, v2, holdout),
	}
}

// ModelV1 is v1 as ONNX, with the metadata a server shows about it.
func (d Demo) ModelV1() *onnxbuild.Model {
	return d.model(d.V1, "iris_sepal_logreg", 1, d.V1Accuracy,
		"Multinomial logistic regression on sepal length and width only (petal inputs get zero weight).")
}

// ModelV2 is v2 as ONNX, with the metadata a server shows about it.
func (d Demo) ModelV2() *onnxbuild.Model {
	return d.model(d.V2, "iris_mlp", 2, d.V2Accuracy,
		"4-8-3 ReLU MLP on all four measurements.")
}

func (d Demo) model(net onnxbuild.Dense, name string, version int64, acc float64, doc string) *onnxbuild.Model {
	m := net.Model(name)
	m.ProducerName = Producer
	m.ModelVersion = version
	m.Doc = "Iris classifier " + doc + " Input: sepal_length, sepal_width, petal_length, petal_width in cm."
	m.Metadata = map[string]string{
		"dataset":          "iris",
		"classes":          strings.Join(d.Train.Classes, ","),
		"features":         strings.Join(d.Train.Features, ","),
		"holdout_accuracy": strconv.FormatFloat(acc, 'f', 2, 64),
		"holdout_rows":     strconv.Itoa(d.Holdout.Len()),
		"train_rows":       strconv.Itoa(d.Train.Len()),
	}
	return m
}

// WriteCSV writes d with a header of feature names and "label", numbers in shortest form.
func WriteCSV(w io.Writer, d Dataset) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintln(bw, strings.Join(d.Features, ",")+",label")
	for i, row := range d.X {
		for _, v := range row {
			bw.WriteString(strconv.FormatFloat(v, 'f', -1, 64))
			bw.WriteByte(',')
		}
		fmt.Fprintln(bw, d.Y[i])
	}
	return bw.Flush()
}

// WriteJSONL writes one request-shaped line per row, {"input":[[f1,f2,f3,f4]],"label":y}, so a
// replay tool can post "input" as is and score the answer against "label".
func WriteJSONL(w io.Writer, d Dataset) error {
	bw := bufio.NewWriter(w)
	for i, row := range d.X {
		bw.WriteString(`{"input":[[`)
		for j, v := range row {
			if j > 0 {
				bw.WriteByte(',')
			}
			bw.WriteString(strconv.FormatFloat(v, 'f', -1, 64))
		}
		fmt.Fprintf(bw, "]],\"label\":%d}\n", d.Y[i])
	}
	return bw.Flush()
}
