// Command mkdemo trains the Iris demo models in Go and writes them with their held-out data:
// models/iris-v1.onnx, models/iris-v2.onnx, testdata/iris-holdout.csv and
// testdata/iris-holdout.jsonl. Run it from the repository root; the output is byte-for-byte
// the same on every run.
//
// It owns only the writing of those files; the training is pkg/demo's. It must not import
// pkg/onnx or anything else that needs cgo or ONNX Runtime, so that it runs wherever Go does.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/understudy-ml/understudy/pkg/demo"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "mkdemo:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("mkdemo", flag.ContinueOnError)
	iris := fs.String("iris", "testdata/iris.csv", "Iris data in scikit-learn's CSV format")
	models := fs.String("models", "models", "directory for iris-v1.onnx and iris-v2.onnx")
	testdata := fs.String("testdata", "testdata", "directory for iris-holdout.csv and iris-holdout.jsonl")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ds, err := demo.LoadIris(*iris)
	if err != nil {
		return err
	}
	d := demo.Build(ds)
	for _, dir := range []string{*models, *testdata} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	v1, v2 := filepath.Join(*models, "iris-v1.onnx"), filepath.Join(*models, "iris-v2.onnx")
	if err := d.ModelV1().WriteFile(v1); err != nil {
		return err
	}
	if err := d.ModelV2().WriteFile(v2); err != nil {
		return err
	}
	if err := writeWith(filepath.Join(*testdata, "iris-holdout.csv"), d.Holdout, demo.WriteCSV); err != nil {
		return err
	}
	if err := writeWith(filepath.Join(*testdata, "iris-holdout.jsonl"), d.Holdout, demo.WriteJSONL); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "train %d rows, held out %d rows\n", d.Train.Len(), d.Holdout.Len())
	fmt.Fprintf(stdout, "%s: held-out accuracy %.3f\n", v1, d.V1Accuracy)
	fmt.Fprintf(stdout, "%s: held-out accuracy %.3f\n", v2, d.V2Accuracy)
	fmt.Fprintf(stdout, "v1 and v2 disagree on %.3f of held-out rows\n", d.Disagreement)
	return nil
}

func writeWith(path string, d demo.Dataset, write func(io.Writer, demo.Dataset) error) error {
	var buf bytes.Buffer
	if err := write(&buf, d); err != nil {
		return fmt.Errorf("write %q: %w", path, err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write %q: %w", path, err)
	}
	return nil
}
