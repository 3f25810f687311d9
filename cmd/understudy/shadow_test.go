package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"
	"github.com/rs/zerolog"

	"github.com/understudy-ml/understudy/pkg/demo"
	"github.com/understudy-ml/understudy/pkg/onnxbuild"
	"github.com/understudy-ml/understudy/pkg/shadow"
	"github.com/understudy-ml/understudy/pkg/sqlite"
)

// demoDir copies the shipped demo models into a fresh directory.
func demoDir(tb testing.TB) string {
	tb.Helper()
	dir := tb.TempDir()
	for _, name := range []string{"iris-v1", "iris-v2"} {
		data, err := os.ReadFile(filepath.Join("..", "..", "models", name+".onnx"))
		if err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name+".onnx"), data, 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	return dir
}

// startServerWith is startServer with a chance to adjust Main before Run.
func startServerWith(tb testing.TB, dir string, adjust func(*Main), args ...string) *Main {
	tb.Helper()
	m := NewMain()
	all := append([]string{"--addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0", "--models-dir", dir, "--db", filepath.Join(tb.TempDir(), "u.db"), "--ort-lib", ortLib()}, args...)
	if err := m.ParseFlags(all, io.Discard); err != nil {
		tb.Fatal(err)
	}
	m.Log = zerolog.New(zerolog.NewTestWriter(tb)).Level(zerolog.WarnLevel)
	if adjust != nil {
		adjust(m)
	}
	if err := m.Run(context.Background()); err != nil {
		m.Close()
		tb.Fatal(err)
	}
	return m
}

// openStore opens a database file the way the server does, for reading
// what it stored.
func openStore(tb testing.TB, path string) *sqlite.DB {
	tb.Helper()
	db, err := sqlite.Open(path, sqlite.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

func holdout(tb testing.TB) demo.Demo {
	tb.Helper()
	ds, err := demo.LoadIris(filepath.Join("..", "..", "testdata", "iris.csv"))
	if err != nil {
		tb.Fatal(err)
	}
	return demo.Build(ds)
}

func rowBody(id string, x []float32) []byte {
	b, _ := json.Marshal(map[string]any{"id": id, "input": [][]float32{x}})
	return b
}

// Ensure each request yields a stored prediction and a stored shadow result
// whose comparison matches the two models evaluated independently in Go,
// and that labels attach to the stored prediction.
func TestShadowPairsStored(t *testing.T) {
	d := holdout(t)
	dbPath := filepath.Join(t.TempDir(), "pairs.db")
	// Every request must have its pair: no shedding, which on one core
	// drops a job whenever the next request is already in flight.
	m := startServerWith(t, demoDir(t), nil, "--primary", "iris-v1", "--db", dbPath, "--shed-when-busy=false")
	rows := d.Holdout.X32()
	for i, x := range rows {
		r := testRequest(t, "POST", m.URL()+"/predict", rowBody(fmt.Sprintf("h-%d", i), x))
		if r.Status != 200 {
			t.Fatalf("predict %d: %d %s", i, r.Status, r.Body)
		}
		fb := fmt.Sprintf(`{"id": "h-%d", "label": %d}`, i, d.Holdout.Y[i])
		if r := testRequest(t, "POST", m.URL()+"/feedback", []byte(fb)); r.Status != 200 {
			t.Fatalf("feedback %d: %d %s", i, r.Status, r.Body)
		}
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}

	db := openStore(t, dbPath)
	ctx := context.Background()
	v1Labels, v1Probs := d.V1.Predict(rows)
	v2Labels, v2Probs := d.V2.Predict(rows)
	disagree := 0
	for i := range rows {
		id := fmt.Sprintf("h-%d", i)
		p, err := db.Prediction(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if p.Label == nil || int(*p.Label) != d.Holdout.Y[i] || p.Model != "iris-v1" || p.Inputs == nil {
			t.Errorf("%s: stored prediction %+v, want label %d and inputs", id, p, d.Holdout.Y[i])
		}
		res, err := db.ShadowResults(ctx, id)
		if err != nil || len(res) != 1 {
			t.Fatalf("%s: shadow results %v, %v; want exactly one", id, res, err)
		}
		c := res[0].Compare
		if res[0].Shadow != "iris-v2" || res[0].Status != "ok" || c.Agreement == nil || c.PrimaryClass == nil {
			t.Fatalf("%s: shadow result %+v", id, res[0])
		}
		wantAgree := 0.0
		if v1Labels[i] == v2Labels[i] {
			wantAgree = 1
		} else {
			disagree++
		}
		if *c.Agreement != wantAgree || *c.PrimaryClass != v1Labels[i] || *c.ShadowClass != v2Labels[i] {
			t.Errorf("%s: agreement %v classes %d/%d, want %v %d/%d", id, *c.Agreement, *c.PrimaryClass, *c.ShadowClass, wantAgree, v1Labels[i], v2Labels[i])
		}
		// The first float output is "probabilities".
		var maxDiff float64
		for j := range v1Probs[i] {
			maxDiff = math.Max(maxDiff, math.Abs(float64(v1Probs[i][j]-v2Probs[i][j])))
		}
		if c.MaxAbsDiff == nil || math.Abs(*c.MaxAbsDiff-maxDiff) > 1e-5 {
			t.Errorf("%s: max |Δ| = %v, want %v", id, c.MaxAbsDiff, maxDiff)
		}
	}
	if disagree == 0 {
		t.Error("the demo models never disagreed; the comparison was not exercised")
	}
}

// failingModel fails at run time on every input: it reshapes [N,4] into
// [3], which no batch size allows.
func failingModel() *onnxbuild.Model {
	return &onnxbuild.Model{Graph: onnxbuild.Graph{
		Name:         "always_fails",
		Nodes:        []onnxbuild.Node{{OpType: "Reshape", Inputs: []string{"input", "shape"}, Outputs: []string{"y"}}},
		Inputs:       []onnxbuild.ValueInfo{{Name: "input", DType: onnxbuild.Float, Dims: []int64{-1, 4}}},
		Outputs:      []onnxbuild.ValueInfo{{Name: "y", DType: onnxbuild.Float, Dims: []int64{3}}},
		Initializers: []onnxbuild.Tensor{onnxbuild.Int64Tensor("shape", []int64{1}, []int64{3})},
	}}
}

// slowModel takes the demo's input and runs a long chain of matrix products.
func slowModel(steps int) *onnxbuild.Model {
	m := onnxbuild.Slow(steps)
	m.Graph.Inputs[0].Name = "input"
	m.Graph.Nodes[0].Inputs[0] = "input"
	return m
}

type answer struct {
	outputs string
	latency float64
	total   time.Duration
}

func sendRows(tb testing.TB, url string, first int, rows [][]float32) []answer {
	tb.Helper()
	out := make([]answer, len(rows))
	for i, x := range rows {
		start := time.Now()
		r := testRequest(tb, "POST", url+"/predict", rowBody(fmt.Sprintf("r-%d", first+i), x))
		if r.Status != 200 {
			tb.Fatalf("predict: %d %s", r.Status, r.Body)
		}
		var v struct {
			Outputs   json.RawMessage `json:"outputs"`
			LatencyUS float64         `json:"latency_us"`
		}
		json.Unmarshal(r.Body, &v)
		out[i] = answer{string(v.Outputs), v.LatencyUS, time.Since(start)}
	}
	return out
}

func medianLatency(as []answer) float64 {
	ls := make([]float64, len(as))
	for i, a := range as {
		ls[i] = a.latency
	}
	slices.Sort(ls)
	return ls[len(ls)/2]
}

// Ensure a shadow that runs far past its timeout and a shadow that fails on
// every input leave the primary's answers and latency unchanged, and are
// recorded as timeout and error.
func TestBadShadowsLeavePrimaryAlone(t *testing.T) {
	d := holdout(t)
	rows := d.Holdout.X32()
	base := t.TempDir()
	data, _ := os.ReadFile(filepath.Join("..", "..", "models", "iris-v1.onnx"))
	os.WriteFile(filepath.Join(base, "iris-v1.onnx"), data, 0o644)
	withBad := t.TempDir()
	os.WriteFile(filepath.Join(withBad, "iris-v1.onnx"), data, 0o644)
	writeModel(t, withBad, "slow", slowModel(2000), time.Time{})
	writeModel(t, withBad, "failing", failingModel(), time.Time{})

	dbPath := filepath.Join(t.TempDir(), "bad.db")
	a := startServerWith(t, base, nil, "--primary", "iris-v1")
	b := startServerWith(t, withBad, nil, "--primary", "iris-v1", "--db", dbPath, "--shadow-timeout", "3ms", "--shadow-workers", "1", "--admin-token", adminToken)
	// The failing shadow gets a generous timeout of its own, so that a
	// loaded machine cannot turn its errors into timeouts.
	if r := admin(t, "PUT", b.URL()+"/models/failing", adminToken, []byte(`{"timeout_ms": 10000}`)); r.Status != 200 {
		t.Fatalf("settings: %d %s", r.Status, r.Body)
	}
	var got, want []answer
	// Interleave the two servers so both see the same machine noise.
	for i := 0; i < len(rows); i += 5 {
		chunk := rows[i:min(i+5, len(rows))]
		want = append(want, sendRows(t, a.URL(), i, chunk)...)
		got = append(got, sendRows(t, b.URL(), i, chunk)...)
	}
	for i := range got {
		if got[i].outputs != want[i].outputs {
			t.Errorf("row %d: answer with bad shadows %s, without %s", i, got[i].outputs, want[i].outputs)
		}
		if got[i].total > time.Second {
			t.Errorf("row %d took %v with bad shadows", i, got[i].total)
		}
	}
	// A loose bound: this is a shared 2-core machine. make bench measures
	// the p99 ratio properly.
	if mg, mw := medianLatency(got), medianLatency(want); mg > 3*mw+1000 {
		t.Errorf("median primary run %vµs with bad shadows, %vµs without", mg, mw)
	}
	a.Close()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	db := openStore(t, dbPath)
	statuses := map[string]map[string]int{}
	for i := range rows {
		res, err := db.ShadowResults(context.Background(), fmt.Sprintf("r-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res {
			if statuses[r.Shadow] == nil {
				statuses[r.Shadow] = map[string]int{}
			}
			statuses[r.Shadow][r.Status]++
		}
	}
	slow, failing := statuses["slow"], statuses["failing"]
	_, dropSlow, _ := db.Skips(context.Background(), "slow")
	_, dropFail, _ := db.Skips(context.Background(), "failing")
	// Every job is a timeout, an error or a counted drop (shadows shed load
	// while the primary is busy), and each kind did happen.
	if slow["timeout"]+int(dropSlow) != len(rows) || slow["ok"] != 0 || slow["timeout"] == 0 {
		t.Errorf("slow shadow: %v and %d dropped, want %d timeouts or drops", slow, dropSlow, len(rows))
	}
	if failing["error"]+int(dropFail) != len(rows) || failing["ok"] != 0 || failing["error"] == 0 {
		t.Errorf("failing shadow: %v and %d dropped, want %d errors or drops", failing, dropFail, len(rows))
	}
}

// Ensure every mirrored request yields exactly one stored result per
// sampled shadow or a counted drop, and the rest are counted as sampled out.
func TestMirrorAccounting(t *testing.T) {
	dbPath := filepath.Join(t.TempDir(), "acct.db")
	m := startServerWith(t, demoDir(t), nil, "--primary", "iris-v1", "--db", dbPath,
		"--shadow-sampling", "0.5", "--shadow-queue", "2", "--shadow-workers", "1")
	const n, clients = 400, 8
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := c; i < n; i += clients {
				r := testRequest(t, "POST", m.URL()+"/predict", rowBody(fmt.Sprintf("a-%d", i), []float32{5, 3, float32(i%7) + 1, 1}))
				if r.Status != 200 {
					t.Errorf("predict: %d", r.Status)
				}
			}
		}()
	}
	wg.Wait()
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	db := openStore(t, dbPath)
	sampled, results := 0, 0
	for i := range n {
		id := fmt.Sprintf("a-%d", i)
		res, err := db.ShadowResults(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if shadow.Sampled(id, "iris-v2", 0.5) {
			sampled++
		} else if len(res) > 0 {
			t.Errorf("%s was sampled out but has a result", id)
		}
		results += len(res)
	}
	sampledOut, dropped, err := db.Skips(context.Background(), "iris-v2")
	if err != nil {
		t.Fatal(err)
	}
	if results+int(dropped) != sampled || int(sampledOut) != n-sampled {
		t.Errorf("%d results + %d dropped, %d sampled out; want %d sampled and %d sampled out", results, dropped, sampledOut, sampled, n-sampled)
	}
	t.Logf("%d sampled: %d results, %d dropped", sampled, results, dropped)
}

// Ensure a database that cannot be written (full) never stops the primary:
// every request is answered, lost rows are counted, and the error is logged
// with rate limiting.
func TestFullStoreKeepsServing(t *testing.T) {
	var logs syncBuffer
	m := startServerWith(t, demoDir(t), func(m *Main) {
		m.StoreOptions = func(o *sqlite.Options) { o.MaxPageCount = 40 }
		m.Log = zerolog.New(&logs)
	}, "--primary", "iris-v1")
	defer m.Close()
	big := make([]float32, 0, 4000)
	for i := range 1000 {
		big = append(big, float32(i), 3, 1, 0.5)
	}
	for i := range 200 {
		b, _ := json.Marshal(map[string]any{"id": fmt.Sprintf("f-%d", i), "inputs": map[string]any{"input": map[string]any{"shape": []int{1000, 4}, "data": big}}})
		r := testRequest(t, "POST", m.URL()+"/predict", b)
		if r.Status != 200 {
			t.Fatalf("request %d: %d %s", i, r.Status, r.Body)
		}
	}
	m.store.Flush(context.Background())
	metrics := testRequest(t, "GET", m.URL()+"/metrics", nil)
	lost := regexp.MustCompile(`understudy_store_rows_lost_total\{table="predictions"\} (\d+)`).FindSubmatch(metrics.Body)
	if lost == nil {
		t.Fatalf("no lost-rows metric in %s", metrics.Body)
	}
	if n, _ := strconv.Atoi(string(lost[1])); n == 0 {
		t.Errorf("no predictions counted as lost with a full database")
	}
	full := strings.Count(logs.String(), "full")
	if full == 0 || full > 3 {
		t.Errorf("the full-database error was logged %d times, want at least once and rate limited", full)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var (
	buildOnce sync.Once
	binary    string
	buildErr  error
)

// buildBinary builds the real binary once for the process-level tests.
func buildBinary(tb testing.TB) string {
	tb.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "understudy-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binary = filepath.Join(dir, "understudy")
		out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v: %s", err, out)
		}
	})
	if buildErr != nil {
		tb.Fatal(buildErr)
	}
	return binary
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

type proc struct {
	cmd *exec.Cmd
	url string
	log *syncBuffer
}

func startBinary(tb testing.TB, models, db string, extra ...string) *proc {
	tb.Helper()
	addr, err := freeAddr()
	if err != nil {
		tb.Fatal(err)
	}
	args := append([]string{"serve", "--addr", addr, "--grpc-addr", "127.0.0.1:0", "--models-dir", models, "--db", db, "--ort-lib", ortLib(), "--primary", "iris-v1"}, extra...)
	cmd := exec.Command(buildBinary(tb), args...)
	p := &proc{cmd: cmd, url: "http://" + addr, log: &syncBuffer{}}
	cmd.Stdout, cmd.Stderr = p.log, p.log
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if resp, err := http.Get(p.url + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p
			}
		}
	}
	tb.Fatalf("server did not become ready: %s", p.log.String())
	return nil
}

// Ensure that after kill -9 every prediction acknowledged more than one
// flush interval earlier is in the database, the database opens cleanly,
// and the server starts again on it.
func TestKill9LosesAtMostTheLastBatch(t *testing.T) {
	models := demoDir(t)
	dbPath := filepath.Join(t.TempDir(), "crash.db")
	p := startBinary(t, models, dbPath)
	const n = 150
	for i := range n {
		r := testRequest(t, "POST", p.url+"/predict", rowBody(fmt.Sprintf("k-%d", i), []float32{5, 3, 1, 0.5}))
		if r.Status != 200 {
			t.Fatalf("predict: %d", r.Status)
		}
	}
	time.Sleep(4 * sqlite.DefaultFlushInterval)
	// Traffic in flight at the moment of the kill may be lost.
	go func() {
		for i := 0; ; i++ {
			if _, err := http.Post(p.url+"/predict", "application/json", bytes.NewReader(rowBody(fmt.Sprintf("late-%d", i), []float32{5, 3, 1, 0.5}))); err != nil {
				return
			}
		}
	}()
	time.Sleep(50 * time.Millisecond)
	p.cmd.Process.Signal(syscall.SIGKILL)
	p.cmd.Wait()

	raw, err := sql.Open("sqlite3", "file:"+dbPath)
	if err != nil {
		t.Fatal(err)
	}
	var integrity string
	raw.QueryRow("PRAGMA integrity_check").Scan(&integrity)
	raw.Close()
	if integrity != "ok" {
		t.Fatalf("integrity_check = %q after kill -9", integrity)
	}
	db, err := sqlite.Open(dbPath, sqlite.Options{})
	if err != nil {
		t.Fatalf("reopen after kill -9: %v", err)
	}
	for i := range n {
		if _, err := db.Prediction(context.Background(), fmt.Sprintf("k-%d", i)); err != nil {
			t.Errorf("acknowledged prediction k-%d lost: %v", i, err)
		}
	}
	db.Close()
	q := startBinary(t, models, dbPath)
	if r := testRequest(t, "POST", q.url+"/predict", rowBody("after", []float32{5, 3, 1, 0.5})); r.Status != 200 {
		t.Errorf("restarted server: %d %s", r.Status, r.Body)
	}
}

// Ensure SIGTERM under load lets in-flight requests finish, drains the
// shadow queue, flushes the store and exits 0, with every answered request
// stored and every one of its shadow jobs stored or counted as dropped.
func TestGracefulShutdown(t *testing.T) {
	dbPath := filepath.Join(t.TempDir(), "graceful.db")
	p := startBinary(t, demoDir(t), dbPath)
	var mu sync.Mutex
	var answered []string
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for c := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("g-%d-%d", c, i)
				resp, err := http.Post(p.url+"/predict", "application/json", bytes.NewReader(rowBody(id, []float32{6, 3, 4, 1.3})))
				if err != nil {
					continue // refused after shutdown began
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 {
					mu.Lock()
					answered = append(answered, id)
					mu.Unlock()
				}
			}
		}()
	}
	time.Sleep(500 * time.Millisecond)
	p.cmd.Process.Signal(syscall.SIGTERM)
	err := p.cmd.Wait()
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, p.log.String())
	}
	for _, want := range []string{"shutting down", "store flushed and closed", "shut down cleanly"} {
		if !strings.Contains(p.log.String(), want) {
			t.Errorf("log lacks %q", want)
		}
	}
	db := openStore(t, dbPath)
	results := 0
	for _, id := range answered {
		if _, err := db.Prediction(context.Background(), id); err != nil {
			t.Errorf("answered request %s not stored: %v", id, err)
		}
		res, _ := db.ShadowResults(context.Background(), id)
		results += len(res)
	}
	_, dropped, _ := db.Skips(context.Background(), "iris-v2")
	if results+int(dropped) != len(answered) {
		t.Errorf("%d answered, %d shadow results + %d dropped", len(answered), results, dropped)
	}
	t.Logf("%d answered before shutdown, %d shadow results, %d dropped", len(answered), results, dropped)
}

// Ensure a second SIGTERM ends a graceful shutdown that is waiting on a
// slow client, instead of leaving the operator to find the PID for kill -9.
func TestSecondSignalExitsAtOnce(t *testing.T) {
	p := startBinary(t, demoDir(t), filepath.Join(t.TempDir(), "second.db"))
	// A request whose body never finishes keeps its connection active, so
	// the first shutdown waits for the body timeout (30 s).
	conn, err := net.Dial("tcp", strings.TrimPrefix(p.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"inputs\"")
	time.Sleep(200 * time.Millisecond)
	exited := make(chan error, 1)
	go func() { exited <- p.cmd.Wait() }()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		t.Fatalf("exited on the first signal with a request in flight (%v); the test needs a shutdown that waits\n%s", err, p.log.String())
	case <-time.After(time.Second):
	}
	if !strings.Contains(p.log.String(), "signal again to exit at once") {
		t.Errorf("log does not say a second signal exits: %s", p.log.String())
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGTERM {
			t.Errorf("exit after the second signal: %v, want killed by SIGTERM", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("still running 5 s after the second SIGTERM\n%s", p.log.String())
	}
}
