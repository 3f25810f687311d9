// Command understudy-bench measures Understudy against raw in-process ONNX
// Runtime on the same models in the same run, and prints ratios: this
// machine is shared and noisy, so absolute numbers mean little.
//
// It owns the benchmark sections, the load generators and the bare floor
// server they are set against. It measures the server from outside, as a
// client does: it runs the built binary (--bin) and speaks to it over HTTP
// and gRPC. In-process it may import ONNX Runtime (pkg/onnx) for the raw
// runs, onnxbuild for the models, the report and SQLite to time a report,
// the domain and the generated gRPC stubs; it must not import the serving
// path (registry, serving, batch, shadow, httpapi, grpcapi), so that what
// it measures is what a client of the binary gets.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/understudy-ml/understudy/pkg/onnx"
	"github.com/understudy-ml/understudy/pkg/onnxbuild"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

var (
	binPath    = flag.String("bin", "bin/understudy", "the server binary to measure")
	ortLib     = flag.String("ort-lib", os.Getenv("UNDERSTUDY_ORT_LIB"), "ONNX Runtime library")
	duration   = flag.Duration("duration", 3*time.Second, "length of each throughput measurement")
	soak       = flag.Duration("soak", 5*time.Minute, "length of the memory soak (0 skips it)")
	model      = flag.String("model", "", "run only the models whose name contains this, e.g. demo or mlp (default all)")
	p99Time    = flag.Duration("p99-time", 4*time.Minute, "length of each fixed-rate latency comparison, both servers together")
	shadowRate = flag.Float64("shadow-rate", 0, "shadow section: the fixed rate of the p99 comparison in req/s (default half the maximum without shadows); set it to compare builds at one rate")
	only       = flag.String("only", "", "comma-separated sections to run: serve,oip,shadow,lossless,canary,cost,ab (with -bin-b),store,lifecycle,report,soak (default all)")

	losslessTime = flag.Duration("lossless-time", 90*time.Second, "length of the lossless section's coverage comparison, all its servers together; its backtest and backfill comparisons take half of it each")
	shedDelays   = flag.String("shed-delays", "5ms,20ms,50ms", "the --shed-delay values the lossless section tries against the old rule")

	floorModel = flag.String("floor-model", "", "internal: run as the floor server for this model")
	floorAddr  = flag.String("floor-addr", "", "internal: the floor server's address")
	floorDebug = flag.String("floor-debug-addr", "", "internal: serve the floor server's CPU profile at this address")
)

// benchModel is a model under test with a request body and its raw input.
type benchModel struct {
	name  string
	file  []byte
	body  []byte
	input map[string]*understudy.Tensor
	row   []float32 // the one input row of body and input
	mlp   *onnxbuild.Dense
}

func main() {
	flag.Parse()
	if *ortLib == "" {
		fail(errors.New("set UNDERSTUDY_ORT_LIB or --ort-lib (make bench does)"))
	}
	if *floorModel != "" {
		fail(floorServer(*floorModel, *floorAddr))
	}
	rt, err := onnx.Open(*ortLib)
	if err != nil {
		fail(err)
	}
	defer rt.Close()
	models, err := benchModels()
	if err != nil {
		fail(err)
	}
	models = slices.DeleteFunc(models, func(m benchModel) bool { return !strings.Contains(m.name, *model) })
	if len(models) == 0 {
		fail(fmt.Errorf("no bench model's name contains %q", *model))
	}
	fmt.Printf("understudy-bench: %d cores, GOMAXPROCS %d, ONNX Runtime %s, %v per cell\n\n", runtime.NumCPU(), runtime.GOMAXPROCS(0), rt.Version(), *duration)
	// Each section is followed by the host's steal while it ran.
	measure := func(f func() error) {
		m := startSteal()
		if err := f(); err != nil {
			fail(err)
		}
		m.report()
	}
	if section("serve") {
		for _, m := range models {
			measure(func() error { return benchServe(rt, m) })
		}
	}
	if section("oip") {
		for _, m := range models {
			measure(func() error { return benchOIP(m) })
		}
	}
	if section("shadow") {
		for _, m := range models {
			measure(func() error { return benchShadows(m) })
		}
	}
	// The lossless section picks its own models, the medium and tiny MLPs,
	// whatever -model says: its targets are set on them.
	if section("lossless") {
		measure(benchLossless)
	}
	if section("canary") {
		for _, m := range models {
			measure(func() error { return benchCanary(m) })
		}
	}
	if section("cost") {
		for _, m := range models {
			measure(func() error { return benchCost(m) })
		}
	}
	if *binB != "" && section("ab") {
		for _, m := range models {
			measure(func() error { return benchAB(m) })
		}
	}
	if section("store") {
		measure(benchStore)
	}
	if section("lifecycle") {
		measure(func() error { return benchLifecycle(models) })
	}
	if section("report") {
		measure(benchReport)
	}
	if section("soak") && *soak > 0 {
		measure(func() error { return benchSoak(models[0]) })
	}
}

func section(name string) bool {
	return *only == "" || slices.Contains(strings.Split(*only, ","), name)
}

// rounds is how many alternating slices each throughput cell is cut into,
// so that both sides see the same noise from other tenants.
const rounds = 5

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "understudy-bench:", err)
	os.Exit(1)
}

func benchModels() ([]benchModel, error) {
	demo, err := os.ReadFile("models/iris-v1.onnx")
	if err != nil {
		return nil, fmt.Errorf("the demo model: %w (run from the repository root)", err)
	}
	row := []float32{5.9, 3.0, 5.1, 1.8}
	models := []benchModel{{name: "iris-v1 (demo)", file: demo, body: predictBody(row), input: input(row), row: row}}
	for _, g := range []struct {
		size string
		d    onnxbuild.Dense
	}{
		{"large", onnxbuild.LargeMLP()},
		// Serving overhead dominates the tiny model: its run is a few µs.
		{"tiny", onnxbuild.RandomMLP(1, 16, []int{64}, 4)},
		{"medium", onnxbuild.RandomMLP(1, 512, []int{1024, 1024}, 10)},
	} {
		m, err := mlpModel(g.size+" "+describe(g.d), g.d)
		if err != nil {
			return nil, err
		}
		models = append(models, m)
	}
	return models, nil
}

// mlpModel is a generated MLP with one input row of values in [0, 1).
func mlpModel(name string, d onnxbuild.Dense) (benchModel, error) {
	file, err := d.Model(strings.Fields(name)[0] + "-mlp").Marshal()
	if err != nil {
		return benchModel{}, err
	}
	x := make([]float32, d.Inputs())
	for i := range x {
		x[i] = float32(i%17) / 17
	}
	return benchModel{name: name, file: file, body: predictBody(x), input: input(x), row: x, mlp: &d}, nil
}

func describe(d onnxbuild.Dense) string {
	parts := []string{strconv.Itoa(d.Inputs())}
	for _, l := range d.Layers {
		parts = append(parts, strconv.Itoa(len(l.W)))
	}
	return "mlp " + strings.Join(parts, "-")
}

func input(x []float32) map[string]*understudy.Tensor {
	return map[string]*understudy.Tensor{"input": {DType: understudy.Float32, Shape: []int64{1, int64(len(x))}, Data: x}}
}

func predictBody(x []float32) []byte {
	b, _ := json.Marshal(map[string]any{"input": [][]float32{x}})
	return b
}
