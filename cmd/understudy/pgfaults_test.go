package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/understudy-ml/understudy/internal/pgtest"
	"github.com/understudy-ml/understudy/pkg/postgres"
	"github.com/understudy-ml/understudy/pkg/report"
)

// These tests stop and start the throwaway PostgreSQL server under a
// running Understudy (pgtest.Lock keeps other packages' tests off it).

// Ensure that while PostgreSQL is down the primary keeps answering with no
// error, /readyz says the store is degraded, and that once it is back the
// buffered rows are written by themselves: the report counts every request.
func TestPostgresOutageWhileServing(t *testing.T) {
	pgtest.Lock(t)
	db := pgtest.URL(t)
	m := startServer(t, demoDir(t), "--primary", "iris-v1", "--db", db, "--replica-id", "solo", "--shed-when-busy=false")
	x := holdout(t).Holdout.X32()
	send := func(prefix string, n int) {
		t.Helper()
		for i := range n {
			if r := testRequest(t, "POST", m.URL()+"/predict", rowBody(fmt.Sprintf("%s%d", prefix, i), x[i%len(x)])); r.Status != 200 {
				t.Fatalf("predict %s%d: %d %s", prefix, i, r.Status, r.Body)
			}
		}
	}
	send("before-", 20)
	pgtest.Stop(t)
	start := time.Now()
	send("during-", 40)
	t.Logf("40 requests while PostgreSQL was down took %v", time.Since(start))
	var ready map[string]any
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		r := testRequest(t, "GET", m.URL()+"/readyz", nil)
		if r.Status != 200 {
			t.Fatalf("/readyz = %d while the store is down, want 200 (degraded, still serving)", r.Status)
		}
		if ready = r.json(t); ready["status"] == "degraded" || time.Now().After(deadline) {
			break
		}
	}
	if ready["status"] != "degraded" || !strings.Contains(fmt.Sprint(ready["warnings"]), "PostgreSQL unreachable") {
		t.Errorf("/readyz = %v, want degraded saying PostgreSQL is unreachable", ready)
	}
	pgtest.Start(t)
	started := time.Now()
	if pg, ok := m.store.(*postgres.DB); ok {
		for pg.Degraded() != "" && time.Since(started) < 60*time.Second {
			time.Sleep(20 * time.Millisecond)
		}
		t.Logf("store recovered %v after PostgreSQL started: %+v", time.Since(started), pg.Buffer())
	}
	var rep report.Report
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		r := testRequest(t, "GET", m.URL()+"/api/report?window=all", nil)
		if r.Status == 200 {
			// A fresh value each time: a field the JSON leaves out must
			// not keep the last answer's value.
			rep = report.Report{}
			if err := json.Unmarshal(r.Body, &rep); err != nil {
				t.Fatal(err)
			}
			if rep.Requests == 60 && len(rep.Shadows) == 1 && rep.Shadows[0].Traffic.OK == 60 && rep.Store != nil && rep.Store.Degraded == "" {
				break
			}
		}
		if time.Now().After(deadline) {
			ok := int64(-1)
			if len(rep.Shadows) == 1 {
				ok = rep.Shadows[0].Traffic.OK
			}
			t.Fatalf("after PostgreSQL came back: %d requests and %d pairs in the report, want 60 and 60; store %+v", rep.Requests, ok, rep.Store)
		}
	}
	if rep.Store == nil || rep.Store.Lost != 0 || rep.Store.Degraded != "" {
		t.Errorf("store health %+v, want nothing lost and not degraded", rep.Store)
	}
	if r := testRequest(t, "GET", m.URL()+"/readyz", nil); r.json(t)["status"] != "ready" {
		t.Errorf("/readyz after recovery = %s", r.Body)
	}
}

// Ensure a PostgreSQL that cannot be reached at start is a clear error
// naming the server without the password, and a non-zero exit.
func TestPostgresUnreachableAtStart(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	cmd := exec.Command(buildBinary(t), "serve", "--addr", "127.0.0.1:0", "--grpc-addr", "", "--models-dir", demoDir(t),
		"--ort-lib", ortLib(), "--db", "postgres://understudy:hunter2-secret@"+addr+"/understudy?connect_timeout=2")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("serve started with PostgreSQL unreachable: %s", out)
	}
	if code := cmd.ProcessState.ExitCode(); code == 0 {
		t.Errorf("exit code %d, want non-zero", code)
	}
	if strings.Contains(string(out), "hunter2-secret") {
		t.Errorf("the password is in the output: %s", out)
	}
	if !strings.Contains(string(out), addr) {
		t.Errorf("the output does not name the server %s: %s", addr, out)
	}
}
