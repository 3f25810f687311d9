package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/understudy-ml/understudy/pkg/onnx"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

func BenchmarkHandlerInProcess(b *testing.B) {
	dir := b.TempDir()
	data, _ := os.ReadFile("../../models/iris-v1.onnx")
	os.WriteFile(filepath.Join(dir, "iris-v1.onnx"), data, 0o644)
	m := startServer(b, dir)
	h := m.srv.Handler
	body := []byte(`{"input": [[5.9, 3.0, 5.1, 1.8]]}`)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		req := httptest.NewRequest("POST", "/predict", bytes.NewReader(body))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 200 {
			b.Fatal(rec.Body.String())
		}
	}
}

func BenchmarkFloorInProcess(b *testing.B) {
	rt, err := onnx.Open(ortLib())
	if err != nil { b.Fatal(err) }
	defer rt.Close()
	data, _ := os.ReadFile("../../models/iris-v1.onnx")
	lm, err := rt.Load(data, onnx.Options{IntraOpThreads: 1})
	if err != nil { b.Fatal(err) }
	in := map[string]*understudy.Tensor{"input": {DType: understudy.Float32, Shape: []int64{1, 4}, Data: []float32{5.9, 3, 5.1, 1.8}}}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var buf bytes.Buffer
		buf.ReadFrom(r.Body)
		if _, err := lm.Runner.Run(context.Background(), in); err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		w.Write([]byte(`{"ok":true}`))
	})
	body := []byte(`{"input": [[5.9, 3.0, 5.1, 1.8]]}`)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		req := httptest.NewRequest("POST", "/predict", bytes.NewReader(body))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
	}
}

func BenchmarkRawRun(b *testing.B) {
	rt, err := onnx.Open(ortLib())
	if err != nil { b.Fatal(err) }
	defer rt.Close()
	data, _ := os.ReadFile("../../models/iris-v1.onnx")
	lm, err := rt.Load(data, onnx.Options{IntraOpThreads: 1})
	if err != nil { b.Fatal(err) }
	in := map[string]*understudy.Tensor{"input": {DType: understudy.Float32, Shape: []int64{1, 4}, Data: []float32{5.9, 3, 5.1, 1.8}}}
	b.ReportAllocs()
	for b.Loop() {
		lm.Runner.Run(context.Background(), in)
	}
}

func BenchmarkRawRunCtx(b *testing.B) {
	rt, err := onnx.Open(ortLib())
	if err != nil { b.Fatal(err) }
	defer rt.Close()
	data, _ := os.ReadFile("../../models/iris-v1.onnx")
	lm, err := rt.Load(data, onnx.Options{IntraOpThreads: 1})
	if err != nil { b.Fatal(err) }
	in := map[string]*understudy.Tensor{"input": {DType: understudy.Float32, Shape: []int64{1, 4}, Data: []float32{5.9, 3, 5.1, 1.8}}}
	b.ReportAllocs()
	for b.Loop() {
		ctx, cancel := context.WithCancel(context.Background())
		lm.Runner.Run(ctx, in)
		cancel()
	}
}
