package main

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkPredict measures one /predict round trip over loopback on the
// demo model, client included; make bench has the comparison with raw runs.
func BenchmarkPredict(b *testing.B) {
	dir := b.TempDir()
	data, err := os.ReadFile("../../models/iris-v1.onnx")
	if err != nil {
		b.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "iris-v1.onnx"), data, 0o644)
	m := startServer(b, dir)
	body := []byte(`{"input": [[5.9, 3.0, 5.1, 1.8]]}`)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := http.Post(m.URL()+"/predict", "application/json", bytes.NewReader(body))
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
}
