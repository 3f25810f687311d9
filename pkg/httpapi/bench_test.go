package httpapi_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/rs/zerolog"

	"github.com/understudy-ml/understudy/pkg/httpapi"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// BenchmarkHandlers sets the handlers' own cost per request side by side,
// with a runner that answers at once: /predict against OIP REST infer.
func BenchmarkHandlers(b *testing.B) {
	run := runFunc(func(in map[string]*understudy.Tensor) (map[string]*understudy.Tensor, error) {
		return map[string]*understudy.Tensor{"y": {DType: understudy.Float32, Shape: []int64{4}, Data: []float32{1, 2, 3, 4}}}, nil
	})
	s := &httpapi.Server{Models: fakeModels{run}, Log: zerolog.Nop()}
	h := s.Handler()
	for _, c := range []struct{ name, path, body string }{
		{"predict", "/predict", `{"input": [5.9, 3.0, 5.1, 1.8]}`},
		{"oip-rest", "/v2/models/fake/infer", `{"inputs": [{"name": "x", "datatype": "FP32", "shape": [4], "data": [5.9, 3.0, 5.1, 1.8]}]}`},
	} {
		b.Run(c.name, func(b *testing.B) {
			body := []byte(c.body)
			b.ReportAllocs()
			for b.Loop() {
				req := httptest.NewRequest(http.MethodPost, c.path, bytes.NewReader(body))
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != 200 {
					b.Fatalf("%s: %d %s", c.path, w.Code, w.Body)
				}
			}
		})
	}
}
