package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime/pprof"
	"strconv"
	"time"

	"github.com/understudy-ml/understudy/pkg/onnx"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// floorServer is the least any Go HTTP server can do per request on this
// machine: read the body, decode its JSON with encoding/json into a float32
// slice, run the same session on it and answer a fixed prediction as JSON
// (floorFixedAnswer, the size of Understudy's answer), as the floor
// does. Understudy's added cost is measured against it, because on a VM the
// kernel's share of a loopback round trip dwarfs a tiny model. Until issue
// 18's second round it answered {"ok":true}, 11 bytes without a
// Content-Type, which put the answer's size in the "added" cost.
//
// floorNoModelPath answers the same request without running the model: read,
// decode, fixed prediction. That is the HTTP floor, which no server
// that runs a model can beat; the bench prints it beside the bare server.
func floorServer(modelPath, addr string) error {
	rt, err := onnx.Open(*ortLib)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(modelPath)
	if err != nil {
		return err
	}
	lm, err := rt.Load(data, onnx.Options{IntraOpThreads: 1})
	if err != nil {
		return err
	}
	name := lm.Signature.Inputs[0].Name
	n := lm.Signature.Inputs[0].Dims[1]
	// decode reads the body and decodes {"input": [[...], ...]} into one
	// float32 slice of rows × n values.
	decode := func(w http.ResponseWriter, r *http.Request) ([]float32, bool) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return nil, false
		}
		var req struct {
			Input [][]float32 `json:"input"`
		}
		if err := json.Unmarshal(body, &req); err != nil || len(req.Input) == 0 {
			http.Error(w, fmt.Sprintf("want {\"input\": [[...]]}: %v", err), 400)
			return nil, false
		}
		x := make([]float32, 0, len(req.Input)*int(n))
		for _, row := range req.Input {
			if int64(len(row)) != n {
				http.Error(w, fmt.Sprintf("want rows of %d values", n), 400)
				return nil, false
			}
			x = append(x, row...)
		}
		return x, true
	}
	http.HandleFunc("/predict", func(w http.ResponseWriter, r *http.Request) {
		x, ok := decode(w, r)
		if !ok {
			return
		}
		in := map[string]*understudy.Tensor{name: {DType: understudy.Float32, Shape: []int64{int64(len(x)) / n, n}, Data: x}}
		if _, err := lm.Runner.Run(context.Background(), in); err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		w.Header()["Content-Type"] = jsonType
		w.Write(floorFixedAnswer)
	})
	http.HandleFunc(floorNoModelPath, func(w http.ResponseWriter, r *http.Request) {
		if _, ok := decode(w, r); ok {
			w.Header()["Content-Type"] = jsonType
			w.Write(floorFixedAnswer)
		}
	})
	http.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {})
	if *floorDebug != "" {
		// On a listener and mux of their own, as the server's --debug-addr,
		// so that the floor's own routes stay as they are.
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/profile", serveProfile)
		mux.HandleFunc("/debug/pprof/allocs", func(w http.ResponseWriter, r *http.Request) {
			pprof.Lookup("allocs").WriteTo(w, 0)
		})
		ln, err := net.Listen("tcp", *floorDebug)
		if err != nil {
			return err
		}
		go http.Serve(ln, mux)
	}
	return http.ListenAndServe(addr, nil)
}

// serveProfile writes a CPU profile of ?seconds=N, as net/http/pprof's
// handler does; importing that package would add its routes to the
// default mux, which the floor server answers on. The allocations route
// beside it is that package's too.
func serveProfile(w http.ResponseWriter, r *http.Request) {
	sec, err := strconv.Atoi(r.FormValue("seconds"))
	if err != nil || sec <= 0 {
		sec = 30
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	if err := pprof.StartCPUProfile(w); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	select {
	case <-time.After(time.Duration(sec) * time.Second):
	case <-r.Context().Done():
	}
	pprof.StopCPUProfile()
}

// startFloor runs this binary as a floor server in a process of its own,
// with extra flags such as -floor-debug-addr.
func startFloor(model []byte, extra ...string) (*server, error) {
	f, err := os.CreateTemp("", "floor-*.onnx")
	if err != nil {
		return nil, err
	}
	f.Write(model)
	f.Close()
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	exe, _ := os.Executable()
	cmd := exec.Command(exe, append([]string{"--ort-lib", *ortLib, "-floor-model", f.Name(), "-floor-addr", addr}, extra...)...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &server{cmd: cmd, url: "http://" + addr, dir: f.Name()}
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if resp, err := http.Get(s.url + "/readyz"); err == nil {
			resp.Body.Close()
			return s, nil
		}
	}
	s.stop()
	return nil, fmt.Errorf("floor server did not start")
}

// floorNoModelPath is the floor server's route that decodes the request and
// answers floorFixedAnswer without running the model.
const floorNoModelPath = "/predict-no-model"

// jsonType is the floor's Content-Type, shared as Understudy shares its own.
var jsonType = []string{"application/json"}

// floorFixedAnswer is a prediction of the size Understudy answers for a
// small classifier, so that the response write costs about the same.
var floorFixedAnswer = []byte(`{"id":"0190a6f4-6a1e-7c4b-9d2e-3f5a6b7c8d9e","model":{"name":"primary","version":"0123456789ab"},` +
	`"outputs":{"label":[2],"probabilities":[[0.01,0.02,0.95,0.02]]},"latency_us":7}` + "\n")

// noModelFloor measures the no-model floor's throughput at c clients for d,
// for the sections to print beside the bare server's.
func noModelFloor(floor *server, body []byte, c int, d time.Duration) (float64, error) {
	res, err := closedLoop(floor.url+floorNoModelPath, body, c, d)
	if err != nil {
		return 0, err
	}
	return res.rate, nil
}

// printNoModelFloor measures the no-model floor at c clients right after a
// section's throughput rounds, in as many rounds of the same length, and
// prints it beside Understudy's rate (ours, requests/s at c clients). It is
// the HTTP floor: read, decode, fixed answer; no server that runs a
// model can reach it.
func printNoModelFloor(floor *server, body []byte, c int, ours float64) {
	var rates []float64
	for range rounds {
		r, err := noModelFloor(floor, body, c, *duration/rounds)
		if err != nil {
			fmt.Printf("no-model floor: %v\n", err)
			return
		}
		rates = append(rates, r)
	}
	fmt.Printf("no-model floor at %d clients (read, encoding/json decode, fixed answer, no model): %.0f/s; Understudy, as above, %.0f/s: %.2f of it\n",
		c, median(rates), ours, ours/median(rates))
}
