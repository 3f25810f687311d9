package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/rs/zerolog"

	"github.com/understudy-ml/understudy/pkg/httpapi"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// fakeModels serves one primary whose runner is given by the test.
type fakeModels struct{ run understudy.Runner }

func (f fakeModels) AcquirePrimary() (*understudy.ServingModel, func(), bool) {
	return &understudy.ServingModel{Name: "fake", Version: "0", Runner: f.run, Signature: understudy.Signature{
		Inputs:  []understudy.TensorInfo{{Name: "x", DType: understudy.Float32, Dims: []int64{-1}}},
		Outputs: []understudy.TensorInfo{{Name: "y", DType: understudy.Float32, Dims: []int64{-1}}},
	}}, func() {}, true
}
func (f fakeModels) Acquire(name, version string) (*understudy.ServingModel, func(), error) {
	m, release, _ := f.AcquirePrimary()
	if (name != "" && name != m.Name) || (version != "" && version != m.Version) {
		return nil, nil, understudy.Errorf(understudy.ENOTFOUND, "no model %s@%s", name, version)
	}
	return m, release, nil
}
func (fakeModels) List() []understudy.ModelInfo { return nil }

type runFunc func(map[string]*understudy.Tensor) (map[string]*understudy.Tensor, error)

func (f runFunc) Run(_ context.Context, in map[string]*understudy.Tensor) (map[string]*understudy.Tensor, error) {
	return f(in)
}
func (runFunc) Close() error { return nil }

// Ensure a panic inside a handler answers 500 with the request id, is
// logged, and the server keeps serving.
func TestPanicRecovered(t *testing.T) {
	var logs strings.Builder
	calls := 0
	run := runFunc(func(in map[string]*understudy.Tensor) (map[string]*understudy.Tensor, error) {
		calls++
		if calls == 1 {
			panic("model adapter bug")
		}
		return map[string]*understudy.Tensor{"y": in["x"]}, nil
	})
	s := &httpapi.Server{Models: fakeModels{run}, Log: zerolog.New(&logs)}
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()

	resp, body := post(t, ts.URL+"/predict", `{"id": "p-1", "input": [1, 2]}`)
	if resp.StatusCode != 500 {
		t.Fatalf("status = %d, want 500", resp.StatusCode)
	}
	var e map[string]string
	json.Unmarshal(body, &e)
	if e["request_id"] != "p-1" || strings.Contains(e["error"], "model adapter bug") {
		t.Errorf("body = %s, want the request id and no internal detail", body)
	}
	if !strings.Contains(logs.String(), "model adapter bug") || !strings.Contains(logs.String(), `"request_id":"p-1"`) {
		t.Errorf("panic not logged with its request id: %s", logs.String())
	}
	resp, body = post(t, ts.URL+"/predict", `{"input": [1, 2]}`)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"y":[1,2]`) {
		t.Errorf("after the panic: %d %s, want 200 with the echo", resp.StatusCode, body)
	}
}

// Ensure the access log carries the request id, status, bytes and latency
// but not the payload, unless payload logging is on.
func TestAccessLog(t *testing.T) {
	for _, payloads := range []bool{false, true} {
		var logs strings.Builder
		run := runFunc(func(in map[string]*understudy.Tensor) (map[string]*understudy.Tensor, error) {
			return map[string]*understudy.Tensor{"y": in["x"]}, nil
		})
		s := &httpapi.Server{Models: fakeModels{run}, Log: zerolog.New(&logs).Level(zerolog.DebugLevel), LogPayloads: payloads}
		ts := httptest.NewServer(s.Handler())
		post(t, ts.URL+"/predict", `{"id": "secret-req", "input": [12345.5]}`)
		ts.Close()
		out := logs.String()
		for _, want := range []string{`"request_id":"secret-req"`, `"status":200`, `"bytes":`, `"latency":`} {
			if !strings.Contains(out, want) {
				t.Errorf("payloads=%v: access log lacks %s: %s", payloads, want, out)
			}
		}
		if got := strings.Contains(out, "12345.5"); got != payloads {
			t.Errorf("payloads=%v: payload in logs = %v", payloads, got)
		}
	}
}

func post(tb testing.TB, url, body string) (*http.Response, []byte) {
	tb.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// Ensure concurrent answers never share their bytes: every client gets its
// own input back, with its own request id, however many answers are being
// encoded at once. Answers are encoded in pooled buffers.
func TestConcurrentAnswersKeepTheirOwn(t *testing.T) {
	_, ts := echoServer(t)
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				// 200 values: long enough to encode that answers being
				// encoded at once overlap.
				vals := make([]string, 200)
				for k := range vals {
					vals[k] = fmt.Sprint(g*100000 + i*200 + k)
				}
				list := strings.Join(vals, ",")
				id := fmt.Sprintf("client-%d-%d", g, i)
				resp, body := post(t, ts.URL+"/predict", fmt.Sprintf(`{"id": %q, "input": [%s]}`, id, list))
				want := fmt.Sprintf(`{"id":%q,"model":{"name":"fake","version":"0"},"outputs":{"y":[%s]}`, id, list)
				if resp.StatusCode != 200 || !strings.HasPrefix(string(body), want) {
					errs <- fmt.Sprintf("request %s: %d %s, want %s...", id, resp.StatusCode, body, want)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

// panicModels panics where the handler acquires the model, outside the
// run, which the serving layer guards itself.
type panicModels struct{ fakeModels }

func (panicModels) Acquire(string, string) (*understudy.ServingModel, func(), error) {
	panic("registry bug")
}

// Ensure a panic in the handler itself, outside any run, answers 500 with
// the request id the body named and is logged with it: POST /predict skips
// the router and its recoverer.
func TestHandlerPanicRecovered(t *testing.T) {
	var logs strings.Builder
	s := &httpapi.Server{Models: panicModels{}, Log: zerolog.New(&logs)}
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	resp, body := post(t, ts.URL+"/predict", `{"id": "p-2", "input": [1, 2]}`)
	var e map[string]string
	json.Unmarshal(body, &e)
	if resp.StatusCode != 500 || e["request_id"] != "p-2" || strings.Contains(e["error"], "registry bug") {
		t.Errorf("%d %s, want 500 with request id p-2 and no internal detail", resp.StatusCode, body)
	}
	if l := logs.String(); !strings.Contains(l, "handler panicked") || !strings.Contains(l, `"request_id":"p-2"`) {
		t.Errorf("panic not logged with the body's request id: %s", l)
	}
}
