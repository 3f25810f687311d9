// Package demo trains the Iris demo models in pure Go and writes them as ONNX.
//
// v1 is a deliberately weak primary (logistic regression on the sepal measurements only) and v2
// a stronger candidate (a small MLP on all four), so that shadowing v2 behind v1 shows real
// disagreements. Everything is seeded, so cmd/mkdemo writes the same bytes on every run.
//
// It owns the Iris data set's loading, the two models' training and their export. It imports
// pkg/onnxbuild and the standard library only; never pkg/onnx or anything else that needs cgo
// or ONNX Runtime, and nothing of the server.
package demo

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
)

// IrisFeatures names the four measurement columns in file order; they head the held-out CSV.
var IrisFeatures = []string{"sepal_length", "sepal_width", "petal_length", "petal_width"}

// Dataset is a labelled table of float features with class indices into Classes.
type Dataset struct {
	Features []string
	Classes  []string
	X        [][]float64
	Y        []int
}

// Len is the number of rows.
func (d Dataset) Len() int { return len(d.Y) }

// Subset returns the rows at idx, in that order, sharing the underlying feature slices.
func (d Dataset) Subset(idx []int) Dataset {
	s := Dataset{Features: d.Features, Classes: d.Classes, X: make([][]float64, len(idx)), Y: make([]int, len(idx))}
	for i, j := range idx {
		s.X[i], s.Y[i] = d.X[j], d.Y[j]
	}
	return s
}

// X32 converts the features to float32, the precision the ONNX models compute in.
func (d Dataset) X32() [][]float32 {
	x := make([][]float32, len(d.X))
	for i, row := range d.X {
		x[i] = make([]float32, len(row))
		for j, v := range row {
			x[i][j] = float32(v)
		}
	}
	return x
}

// LoadIris reads the Iris data in scikit-learn's bundled CSV format.
func LoadIris(path string) (Dataset, error) {
	f, err := os.Open(path)
	if err != nil {
		return Dataset{}, fmt.Errorf("load iris: %w", err)
	}
	defer f.Close()
	d, err := ParseIris(f)
	if err != nil {
		return Dataset{}, fmt.Errorf("load iris %q: %w", path, err)
	}
	return d, nil
}

// ParseIris reads scikit-learn's CSV format: a header "rows,features,class names…" and then
// rows of features followed by an integer class.
func ParseIris(r io.Reader) (Dataset, error) {
	sc := bufio.NewScanner(r)
	if !sc.Scan() {
		if err := sc.Err(); err != nil {
			return Dataset{}, err
		}
		return Dataset{}, fmt.Errorf("empty file")
	}
	head := strings.Split(strings.TrimSpace(sc.Text()), ",")
	if len(head) < 3 {
		return Dataset{}, fmt.Errorf("header %q: want rows,features,class names", sc.Text())
	}
	rows, err1 := strconv.Atoi(head[0])
	nf, err2 := strconv.Atoi(head[1])
	if err1 != nil || err2 != nil || rows < 0 || nf != len(IrisFeatures) {
		return Dataset{}, fmt.Errorf("header %q: want rows,%d,class names", sc.Text(), len(IrisFeatures))
	}
	d := Dataset{Features: IrisFeatures, Classes: head[2:]}
	for line := 2; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" {
			continue
		}
		cols := strings.Split(text, ",")
		if len(cols) != nf+1 {
			return Dataset{}, fmt.Errorf("line %d: %d columns, want %d", line, len(cols), nf+1)
		}
		x := make([]float64, nf)
		for j := range nf {
			v, err := strconv.ParseFloat(cols[j], 64)
			if err != nil {
				return Dataset{}, fmt.Errorf("line %d column %d: %w", line, j+1, err)
			}
			x[j] = v
		}
		y, err := strconv.Atoi(cols[nf])
		if err != nil || y < 0 || y >= len(d.Classes) {
			return Dataset{}, fmt.Errorf("line %d: class %q, want 0..%d", line, cols[nf], len(d.Classes)-1)
		}
		d.X = append(d.X, x)
		d.Y = append(d.Y, y)
	}
	if err := sc.Err(); err != nil {
		return Dataset{}, err
	}
	if d.Len() != rows {
		return Dataset{}, fmt.Errorf("%d rows, header says %d", d.Len(), rows)
	}
	return d, nil
}

// Split holds out the given fraction of each class, chosen by a shuffle seeded with seed, so
// both parts keep the class balance; each part keeps the original row order.
func Split(d Dataset, seed uint64, holdout float64) (train, test Dataset) {
	r := rand.New(rand.NewPCG(seed, 0x69726973))
	byClass := make([][]int, len(d.Classes))
	for i, y := range d.Y {
		byClass[y] = append(byClass[y], i)
	}
	var trainIdx, testIdx []int
	for _, idx := range byClass {
		r.Shuffle(len(idx), func(i, j int) { idx[i], idx[j] = idx[j], idx[i] })
		n := int(float64(len(idx))*holdout + 0.5)
		testIdx = append(testIdx, idx[:n]...)
		trainIdx = append(trainIdx, idx[n:]...)
	}
	slices.Sort(trainIdx)
	slices.Sort(testIdx)
	return d.Subset(trainIdx), d.Subset(testIdx)
}
