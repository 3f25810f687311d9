package demo_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/understudy-ml/understudy/pkg/demo"
)

const irisPath = "../../testdata/iris.csv"

func loadIris(tb testing.TB) demo.Dataset {
	tb.Helper()
	d, err := demo.LoadIris(irisPath)
	if err != nil {
		tb.Fatalf("LoadIris: %v", err)
	}
	return d
}

// Ensure the bundled file loads as 150 rows, 50 per class.
func TestLoadIris(t *testing.T) {
	d := loadIris(t)
	if got, want := d.Len(), 150; got != want {
		t.Errorf("rows = %d, want %d", got, want)
	}
	if got, want := d.Classes, []string{"setosa", "versicolor", "virginica"}; !reflect.DeepEqual(got, want) {
		t.Errorf("classes = %v, want %v", got, want)
	}
	counts := make([]int, 3)
	for _, y := range d.Y {
		counts[y]++
	}
	if got, want := counts, []int{50, 50, 50}; !reflect.DeepEqual(got, want) {
		t.Errorf("class counts = %v, want %v", got, want)
	}
	if got, want := d.X[0], []float64{5.1, 3.5, 1.4, 0.2}; !reflect.DeepEqual(got, want) {
		t.Errorf("first row = %v, want %v", got, want)
	}
}

// Ensure malformed files are refused with the line at fault.
func TestParseIrisErrors(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", "empty file"},
		{"short header", "1,4\n", "header"},
		{"wrong feature count", "1,3,a,b\n1,2,3,0\n", "header"},
		{"row count mismatch", "2,4,a,b\n1,2,3,4,0\n", "1 rows, header says 2"},
		{"bad number", "1,4,a,b\n1,x,3,4,0\n", "line 2 column 2"},
		{"bad class", "1,4,a,b\n1,2,3,4,2\n", "line 2: class"},
		{"short row", "1,4,a,b\n1,2,3,0\n", "line 2: 4 columns"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := demo.ParseIris(strings.NewReader(tt.in))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

// Ensure the split is stratified, disjoint, complete and the same for the same seed.
func TestSplit(t *testing.T) {
	d := loadIris(t)
	train, test := demo.Split(d, demo.Seed, demo.HoldoutFraction)
	if got, want := [2]int{train.Len(), test.Len()}, [2]int{105, 45}; got != want {
		t.Errorf("sizes = %v, want %v", got, want)
	}
	counts := make([]int, 3)
	for _, y := range test.Y {
		counts[y]++
	}
	if got, want := counts, []int{15, 15, 15}; !reflect.DeepEqual(got, want) {
		t.Errorf("held-out class counts = %v, want %v", got, want)
	}
	// Iris has a few duplicate rows, so compare multisets of rows rather than sets.
	seen := map[string]int{}
	for _, part := range []demo.Dataset{train, test} {
		for i, x := range part.X {
			b, _ := json.Marshal([]any{x, part.Y[i]})
			seen[string(b)]++
		}
	}
	for i, x := range d.X {
		b, _ := json.Marshal([]any{x, d.Y[i]})
		seen[string(b)]--
	}
	for row, n := range seen {
		if n != 0 {
			t.Errorf("row %s appears %+d times more in train+test than in the data", row, n)
		}
	}
	_, again := demo.Split(d, demo.Seed, demo.HoldoutFraction)
	if !reflect.DeepEqual(test, again) {
		t.Errorf("same seed gave a different split")
	}
	_, other := demo.Split(d, demo.Seed+1, demo.HoldoutFraction)
	if reflect.DeepEqual(test, other) {
		t.Errorf("different seed gave the same split")
	}
}

// Ensure v1 is weak, v2 strong, and they disagree often enough for shadowing to show it.
func TestBuildTargets(t *testing.T) {
	d := demo.Build(loadIris(t))
	if d.V1Accuracy < 0.7 || d.V1Accuracy > 0.85 {
		t.Errorf("v1 held-out accuracy %.3f, want 0.70–0.85", d.V1Accuracy)
	}
	if d.V2Accuracy < 0.93 {
		t.Errorf("v2 held-out accuracy %.3f, want >= 0.93", d.V2Accuracy)
	}
	if d.Disagreement < 0.1 || d.Disagreement > 0.3 {
		t.Errorf("disagreement %.3f, want 0.10–0.30", d.Disagreement)
	}
	// v1 must not look at the petals, or it would not be the weak model the demo needs.
	for o, row := range d.V1.Layers[0].W {
		if row[2] != 0 || row[3] != 0 {
			t.Errorf("v1 unit %d has petal weights %v, want 0", o, row[2:])
		}
	}
}

// Ensure the standardisation is folded into the weights correctly: logistic regression on all
// four features fits its own training data well only if the folded model reads raw
// measurements the way the trained one read standardised ones.
func TestTrainFoldsStandardisation(t *testing.T) {
	d := loadIris(t)
	net := demo.Train(d, demo.TrainConfig{Features: []int{0, 1, 2, 3}, Epochs: 300, LearningRate: 0.05, Seed: 1})
	if acc := demo.Accuracy(net, d); acc < 0.95 {
		t.Errorf("logistic regression on all features scores %.3f on its own training data, want >= 0.95", acc)
	}
}

// Ensure the demo models carry the metadata a server will show.
func TestModelMetadata(t *testing.T) {
	d := demo.Build(loadIris(t))
	for _, tt := range []struct {
		name    string
		version int64
		acc     string
	}{{"v1", 1, "0.78"}, {"v2", 2, "0.98"}} {
		t.Run(tt.name, func(t *testing.T) {
			m := d.ModelV1()
			if tt.version == 2 {
				m = d.ModelV2()
			}
			if got, want := m.ProducerName, demo.Producer; got != want {
				t.Errorf("producer = %q, want %q", got, want)
			}
			if got, want := m.ModelVersion, tt.version; got != want {
				t.Errorf("model version = %d, want %d", got, want)
			}
			want := map[string]string{
				"dataset": "iris", "classes": "setosa,versicolor,virginica",
				"features":         "sepal_length,sepal_width,petal_length,petal_width",
				"holdout_accuracy": tt.acc, "holdout_rows": "45", "train_rows": "105",
			}
			if !reflect.DeepEqual(m.Metadata, want) {
				t.Errorf("metadata = %v, want %v", m.Metadata, want)
			}
			b, err := m.Marshal()
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			if len(b) > 4096 {
				t.Errorf("model is %d bytes, want a tiny one", len(b))
			}
		})
	}
}

// Ensure the replay files have the documented shape and agree with each other.
func TestWriteHoldout(t *testing.T) {
	d := demo.Dataset{
		Features: demo.IrisFeatures,
		Classes:  []string{"a", "b"},
		X:        [][]float64{{5.1, 3, 1.4, 0.2}, {6, 2.25, 4, 1}},
		Y:        []int{0, 1},
	}
	var csv, jsonl bytes.Buffer
	if err := demo.WriteCSV(&csv, d); err != nil {
		t.Fatal(err)
	}
	if err := demo.WriteJSONL(&jsonl, d); err != nil {
		t.Fatal(err)
	}
	wantCSV := "sepal_length,sepal_width,petal_length,petal_width,label\n5.1,3,1.4,0.2,0\n6,2.25,4,1,1\n"
	if got := csv.String(); got != wantCSV {
		t.Errorf("CSV = %q, want %q", got, wantCSV)
	}
	sc := bufio.NewScanner(&jsonl)
	var rows int
	for sc.Scan() {
		var row struct {
			Input [][]float32 `json:"input"`
			Label int         `json:"label"`
		}
		if err := json.Unmarshal(sc.Bytes(), &row); err != nil {
			t.Fatalf("line %d: %v", rows+1, err)
		}
		want := []float32{float32(d.X[rows][0]), float32(d.X[rows][1]), float32(d.X[rows][2]), float32(d.X[rows][3])}
		if got := row.Input; len(got) != 1 || !reflect.DeepEqual(got[0], want) {
			t.Errorf("line %d input = %v, want [%v]", rows+1, got, want)
		}
		if got, want := row.Label, d.Y[rows]; got != want {
			t.Errorf("line %d label = %d, want %d", rows+1, got, want)
		}
		rows++
	}
	if got, want := rows, 2; got != want {
		t.Errorf("%d lines, want %d", got, want)
	}
}
