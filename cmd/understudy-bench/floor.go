package main

import (
	"context"
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
)

// floorServer is the least any Go HTTP server can do per request on this
// machine: read the body, run the same session on a fixed input, write a
// fixed answer. Understudy's added cost is measured against it, because on a
// VM the kernel's share of a loopback round trip dwarfs a tiny model.
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
	n := lm.Signature.Inputs[0].Dims[1]
	in := input(make([]float32, n))
	http.HandleFunc("/predict", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if _, err := lm.Runner.Run(context.Background(), in); err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		w.Write([]byte(`{"ok":true}`))
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
