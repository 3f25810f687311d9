package main

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"

	"github.com/understudy-ml/understudy/pkg/sqlite"
)

// These tests run the real binary as a process, built once, to see what
// only a process shows: kill -9 and what the database kept, and SIGTERM
// with its graceful shutdown and the second signal that cuts it short.

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
	// Jobs the drain deadline cut off are deferred for the next start.
	pending, err := db.PendingJobs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if results+int(dropped)+int(pending) != len(answered) {
		t.Errorf("%d answered, %d shadow results + %d dropped + %d deferred", len(answered), results, dropped, pending)
	}
	t.Logf("%d answered before shutdown, %d shadow results, %d dropped, %d deferred", len(answered), results, dropped, pending)
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

// Ensure a --grpc-addr that cannot be listened on ends start-up with an
// error naming it, rather than a process that hangs.
func TestGRPCAddrInUseExits(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cmd := exec.Command(buildBinary(t), "serve", "--addr", "127.0.0.1:0", "--grpc-addr", ln.Addr().String(),
		"--models-dir", demoDir(t), "--db", filepath.Join(t.TempDir(), "u.db"), "--ort-lib", ortLib())
	done := make(chan error, 1)
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatalf("serve exited 0 with --grpc-addr in use: %s", out.String())
		}
		if !strings.Contains(out.String(), "--grpc-addr") {
			t.Errorf("the error does not name --grpc-addr: %s", out.String())
		}
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("serve still running 20 s after failing to listen on --grpc-addr: %s", out.String())
	}
}
