package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/understudy-ml/understudy/pkg/httpapi"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

func echoServer(tb testing.TB) (*httpapi.Server, *httptest.Server) {
	tb.Helper()
	run := runFunc(func(in map[string]*understudy.Tensor) (map[string]*understudy.Tensor, error) {
		return map[string]*understudy.Tensor{"y": in["x"]}, nil
	})
	s := &httpapi.Server{
		Models:     fakeModels{run},
		Log:        zerolog.Nop(),
		Admin:      fakeAdmin{},
		AdminToken: "secret",
		Labels: func(context.Context, []understudy.Label) ([]understudy.Label, error) {
			return nil, nil
		},
	}
	ts := httptest.NewServer(s.Handler())
	tb.Cleanup(ts.Close)
	return s, ts
}

func do(tb testing.TB, method, url, body string) (*http.Response, []byte) {
	tb.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer secret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// Ensure a deeply nested body is refused with a 400 naming the limit on
// every endpoint that parses JSON, instead of overflowing the parser's
// stack, which kills the process.
func TestDeeplyNestedJSONRefused(t *testing.T) {
	_, ts := echoServer(t)
	deep := strings.Repeat("[", 4<<20)
	bodies := map[string]string{
		"arrays":          deep,
		"objects":         strings.Repeat(`{"a":`, 1<<20),
		"inside an input": `{"input": ` + deep + `}`,
		"just over":       `{"input": ` + strings.Repeat("[", 64) + "1" + strings.Repeat("]", 64) + `}`,
	}
	for _, route := range []struct{ method, path string }{
		{"POST", "/predict"},
		{"POST", "/feedback"},
		{"PUT", "/models/m"},
	} {
		for name, body := range bodies {
			t.Run(route.path+"/"+name, func(t *testing.T) {
				resp, got := do(t, route.method, ts.URL+route.path, body)
				if resp.StatusCode != 400 || !strings.Contains(string(got), "nested deeper than 64 levels") {
					t.Errorf("status %d, body %.300s; want 400 naming the depth limit", resp.StatusCode, got)
				}
			})
		}
	}
	// Brackets inside strings, escaped quotes included, are not nesting.
	inString := strings.Repeat("[{", 60)
	for _, id := range []string{`\"\\` + inString, `x\"` + inString} {
		resp, got := do(t, "POST", ts.URL+"/predict", `{"id": "`+id+`", "input": [1, 2]}`)
		if resp.StatusCode != 200 {
			t.Errorf("brackets in a string: status %d, body %s; want 200", resp.StatusCode, got)
		}
	}
	// At the limit, the body reaches the tensor decoder and its own,
	// smaller limit on arrays.
	resp, got := do(t, "POST", ts.URL+"/predict", `{"input": `+strings.Repeat("[", 63)+"1"+strings.Repeat("]", 63)+`}`)
	if resp.StatusCode != 400 || !strings.Contains(string(got), "deeper than 32") {
		t.Errorf("63 nested arrays: status %d, body %s; want the tensor decoder's limit", resp.StatusCode, got)
	}
}

// Ensure slow clients that declare a large body but send little of it cost
// little memory: the buffer grows as bytes arrive rather than being sized
// from Content-Length up front.
func TestDeclaredLengthNotAllocatedUpFront(t *testing.T) {
	s, ts := echoServer(t)
	const clients = 8
	conns := make([]net.Conn, clients)
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range conns {
		c, err := net.Dial("tcp", ts.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 16000000\r\n\r\n{")
		conns[i] = c
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.Serving.InFlight() < clients && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := s.Serving.InFlight(); got < clients {
		t.Fatalf("%d requests in flight, want %d", got, clients)
	}
	time.Sleep(100 * time.Millisecond) // let every handler reach its read
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if got, limit := after.TotalAlloc-before.TotalAlloc, uint64(clients<<20); got > limit {
		t.Errorf("%d clients that sent one byte each cost %d MB; want under %d MB", clients, got>>20, limit>>20)
	}
	for _, c := range conns {
		c.Close()
	}

	// A body larger than the first buffer still arrives whole.
	values := make([]string, 200000)
	for i := range values {
		values[i] = fmt.Sprint(i % 1000)
	}
	resp, body := post(t, ts.URL+"/predict", `{"input": [`+strings.Join(values, ",")+`]}`)
	var out struct{ Outputs map[string][]float32 }
	if err := json.Unmarshal(body, &out); err != nil || resp.StatusCode != 200 || len(out.Outputs["y"]) != len(values) || out.Outputs["y"][len(values)-1] != 999 {
		t.Errorf("large body: status %d, %d values back, %v; want all %d", resp.StatusCode, len(out.Outputs["y"]), err, len(values))
	}
}

// Ensure the body limit holds whether the client declares the length or
// sends the body chunked: at the limit the request is served, one byte over
// it is a 413 naming the limit, and a body shorter than declared is a 400.
func TestBodyLimitDeclaredAndChunked(t *testing.T) {
	s, ts := echoServer(t)
	body := `{"input": [1, 2, 3]}`
	s.MaxBody = int64(len(body))
	over := `{"input": [1, 2, 30]}`
	send := func(b string, chunked bool) (int, string) {
		t.Helper()
		var r io.Reader = strings.NewReader(b)
		if chunked {
			r = io.MultiReader(r) // no length known: net/http sends it chunked
		}
		req, err := http.NewRequest(http.MethodPost, ts.URL+"/predict", r)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		got, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(got)
	}
	for _, chunked := range []bool{false, true} {
		if code, got := send(body, chunked); code != 200 {
			t.Errorf("chunked %v: a body at the limit got %d %s, want 200", chunked, code, got)
		}
		code, got := send(over, chunked)
		if want := strconv.Itoa(len(body)); code != 413 || !strings.Contains(got, want) {
			t.Errorf("chunked %v: a body one byte over got %d %s, want 413 naming %s", chunked, code, got, want)
		}
	}

	c, err := net.Dial("tcp", ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", len(body), body[:10])
	c.(*net.TCPConn).CloseWrite()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 400 || !strings.Contains(string(got), "request body") {
		t.Errorf("a body cut short of its Content-Length got %d %s, want 400 about the request body", resp.StatusCode, got)
	}
}

// Ensure a body that arrives too slowly is cut off with a 400 that says so,
// rather than holding its connection and buffer open indefinitely.
func TestSlowBodyTimesOut(t *testing.T) {
	run := runFunc(func(in map[string]*understudy.Tensor) (map[string]*understudy.Tensor, error) {
		return map[string]*understudy.Tensor{"y": in["x"]}, nil
	})
	s := &httpapi.Server{Models: fakeModels{run}, Log: zerolog.Nop(), BodyTimeout: 200 * time.Millisecond}
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	c, err := net.Dial("tcp", ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no response to a stalled body: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 400 || !strings.Contains(string(body), "within 200ms") {
		t.Errorf("status %d, body %s; want 400 saying the body did not arrive in time", resp.StatusCode, body)
	}

	// A prompt body is unaffected, and so is a run that outlasts the body
	// timeout.
	s2 := &httpapi.Server{Models: fakeModels{sleepRun(500 * time.Millisecond)}, Log: zerolog.Nop(), BodyTimeout: 200 * time.Millisecond}
	ts2 := httptest.NewServer(s2.Handler())
	defer ts2.Close()
	resp2, got := post(t, ts2.URL+"/predict", `{"input": [1, 2]}`)
	// The answer itself, not just the status: a request whose context the
	// body deadline ended gets an empty 200 from net/http.
	if resp2.StatusCode != 200 || !strings.Contains(string(got), `"outputs":{"y":[1,2]}`) {
		t.Errorf("slow run: status %d, body %s; want 200 with the run's outputs", resp2.StatusCode, got)
	}
}

// sleepRun is a run of a fixed length that, like ONNX Runtime's runs
// through their RunOptions, ends early when its context does.
type sleepRun time.Duration

func (d sleepRun) Run(ctx context.Context, in map[string]*understudy.Tensor) (map[string]*understudy.Tensor, error) {
	select {
	case <-time.After(time.Duration(d)):
		return map[string]*understudy.Tensor{"y": in["x"]}, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("run terminated: %w", ctx.Err())
	}
}

func (sleepRun) Close() error { return nil }

// Ensure a wrong method gets a JSON 405 with an Allow header that lists the
// methods the path does take, and a message that names them.
func TestMethodNotAllowed(t *testing.T) {
	_, ts := echoServer(t)
	tests := []struct {
		method, path, allow string
	}{
		{"GET", "/predict", "POST"},
		{"DELETE", "/models", "GET"},
		{"GET", "/models/m", "PUT"},
		{"PATCH", "/healthz", "GET"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			resp, body := do(t, tt.method, ts.URL+tt.path, "")
			if resp.StatusCode != 405 {
				t.Fatalf("status %d, want 405", resp.StatusCode)
			}
			if got := resp.Header.Get("Content-Type"); got != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", got)
			}
			if got := resp.Header.Get("Allow"); got != tt.allow {
				t.Errorf("Allow = %q, want %q", got, tt.allow)
			}
			var e map[string]string
			if err := json.Unmarshal(body, &e); err != nil {
				t.Fatalf("body %s: %v", body, err)
			}
			if !strings.HasSuffix(e["error"], "allowed: "+tt.allow) || e["code"] != "method_not_allowed" || e["request_id"] == "" {
				t.Errorf("body = %s, want the allowed methods, the code and the request id", body)
			}
		})
	}
}

// Ensure answers carry a Content-Length, never chunked, whether net/http
// computes it (small answers) or the handler sets it (large ones).
func TestPredictContentLength(t *testing.T) {
	_, ts := echoServer(t)
	for _, n := range []int{4, 2000} {
		vals := make([]string, n)
		for i := range vals {
			vals[i] = strconv.Itoa(i)
		}
		resp, body := do(t, "POST", ts.URL+"/predict", `{"input":[`+strings.Join(vals, ",")+`]}`)
		if resp.StatusCode != 200 {
			t.Fatalf("%d values: %d %s", n, resp.StatusCode, body)
		}
		if resp.ContentLength != int64(len(body)) || len(resp.TransferEncoding) > 0 {
			t.Errorf("%d values: Content-Length %d, Transfer-Encoding %v for a %d-byte answer; want the length, not chunked",
				n, resp.ContentLength, resp.TransferEncoding, len(body))
		}
	}
}

// Ensure the direct route to POST /predict (Server.outer) serves exactly
// that path: other spellings get the router's 404 as they always did.
func TestPredictRouteIsExact(t *testing.T) {
	_, ts := echoServer(t)
	for _, path := range []string{"/predict/", "/pre%64ict", "/predict2", "//predict"} {
		resp, body := do(t, "POST", ts.URL+path, `{"input":[1,2,3,4]}`)
		if resp.StatusCode != 404 || !strings.Contains(string(body), "no route for POST") {
			t.Errorf("POST %s: %d %s, want the router's 404", path, resp.StatusCode, body)
		}
	}
	resp, body := do(t, "POST", ts.URL+"/predict", `{"input":[1,2,3,4]}`)
	if resp.StatusCode != 200 || resp.Header.Get("X-Request-Id") == "" {
		t.Errorf("POST /predict: %d %s, want 200 with a request id", resp.StatusCode, body)
	}
}

// Ensure a request id with control characters is refused, naming the
// problem, rather than echoed raw or mangled into the X-Request-Id header;
// an unusable X-Request-Id header is replaced by a generated id.
func TestRequestIDControlCharacters(t *testing.T) {
	_, ts := echoServer(t)
	for _, id := range []string{`a\u0000b`, `a\r\nb`, `tab\there`, `del\u007f`} {
		t.Run(id, func(t *testing.T) {
			resp, body := post(t, ts.URL+"/predict", `{"id": "`+id+`", "input": [1]}`)
			if resp.StatusCode != 400 || !strings.Contains(string(body), "control character") {
				t.Errorf("status %d, body %s; want 400 naming the control character", resp.StatusCode, body)
			}
			if h := resp.Header.Get("X-Request-Id"); strings.ContainsAny(h, "\x00\t\r\n\x7f ") || h == "" {
				t.Errorf("X-Request-Id = %q, want a clean generated id", h)
			}
		})
	}
	resp, body := post(t, ts.URL+"/predict", `{"id": "ok-1 é", "input": [1]}`)
	if resp.StatusCode != 200 || resp.Header.Get("X-Request-Id") != "ok-1 é" {
		t.Errorf("printable id: status %d, header %q, body %s", resp.StatusCode, resp.Header.Get("X-Request-Id"), body)
	}

	if _, h, id := predictWithIDHeader(t, ts.URL, "X-Request-Id", "a\tb"); h == "a\tb" || h == "" || id != h {
		t.Errorf("header id with a tab: X-Request-Id %q, body id %q; want the same generated id in both", h, id)
	}
}

// predictWithIDHeader posts a one-value input with the header name, spelled
// as given, set to id, and returns the status, the answer's X-Request-Id
// and the id in its body.
func predictWithIDHeader(t *testing.T, url, name, id string) (status int, header, bodyID string) {
	t.Helper()
	req, _ := http.NewRequest("POST", url+"/predict", strings.NewReader(`{"input": [1]}`))
	req.Header[name] = []string{id} // sent as spelled, not canonicalized
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var out struct{ ID string }
	json.Unmarshal(body, &out)
	return resp.StatusCode, resp.Header.Get("X-Request-Id"), out.ID
}

// Ensure a client's request id is honoured however it spells the header's
// name: the server reads header keys in net/http's canonical form.
func TestRequestIDHeaderAnyCase(t *testing.T) {
	_, ts := echoServer(t)
	for _, name := range []string{"X-Request-Id", "x-request-id", "X-REQUEST-ID"} {
		if status, h, id := predictWithIDHeader(t, ts.URL, name, "client-id-7"); status != 200 || h != "client-id-7" || id != h {
			t.Errorf("header %s: status %d, X-Request-Id %q, body id %q; want client-id-7 in both", name, status, h, id)
		}
	}
}
