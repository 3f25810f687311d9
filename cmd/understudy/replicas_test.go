package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/understudy-ml/understudy/internal/pgtest"
	"github.com/understudy-ml/understudy/pkg/report"
)

// This file runs several real server processes on one real PostgreSQL, as
// a deployment behind a load balancer would: one report over all of them,
// feedback on any replica, and promote and rollback reaching every one.

// replica starts a server process on db with its own copy of the demo
// models and its own port.
func replica(tb testing.TB, db, id string, extra ...string) *proc {
	tb.Helper()
	args := append([]string{"--replica-id", id, "--admin-token", adminToken, "--shed-when-busy=false", "--settle", "100ms", "--rescan", "200ms"}, extra...)
	return startBinary(tb, demoDir(tb), db, args...)
}

// apiReport reads the JSON report of the whole history.
func apiReport(tb testing.TB, url string) report.Report {
	tb.Helper()
	r := testRequest(tb, "GET", url+"/api/report?window=all", nil)
	var rep report.Report
	if err := json.Unmarshal(r.Body, &rep); err != nil {
		tb.Fatalf("report: %v: %s", err, r.Body)
	}
	return rep
}

// pollReport polls a replica's report until cond holds.
func pollReport(tb testing.TB, url, what string, cond func(report.Report) bool) report.Report {
	tb.Helper()
	var rep report.Report
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if rep = apiReport(tb, url); cond(rep) {
			return rep
		}
	}
	tb.Fatalf("%s: report never got there: requests %d, replicas %+v", what, rep.Requests, rep.Replicas)
	return rep
}

// Ensure two replicas on one PostgreSQL give one report, each with a
// per-replica breakdown, and that feedback sent to one replica joins a
// request the other served.
func TestReplicasShareOneReport(t *testing.T) {
	db := pgtest.URL(t)
	a, b := replica(t, db, "replica-a"), replica(t, db, "replica-b")
	rows := holdout(t).Holdout
	x := rows.X32()
	const na, nb = 30, 20
	for i := range na + nb {
		p := a
		if i >= na {
			p = b
		}
		if r := testRequest(t, "POST", p.url+"/predict", rowBody(fmt.Sprintf("r-%d", i), x[i%len(x)])); r.Status != 200 {
			t.Fatalf("predict on %s: %d %s", p.url, r.Status, r.Body)
		}
	}
	// Labels for b's requests, sent to a.
	var labels []map[string]any
	for i := na; i < na+nb; i++ {
		labels = append(labels, map[string]any{"id": fmt.Sprintf("r-%d", i), "label": rows.Y[i%len(x)]})
	}
	body, _ := json.Marshal(labels)
	var fr response
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		// b writes its rows within a flush interval; until then a label
		// for them is unknown, as on one server.
		if fr = testRequest(t, "POST", a.url+"/feedback", body); fr.Status == 200 || time.Now().After(deadline) {
			break
		}
	}
	if fr.Status != 200 {
		t.Fatalf("feedback on a for b's requests: %d %s", fr.Status, fr.Body)
	}
	for _, p := range []*proc{a, b} {
		rep := pollReport(t, p.url, p.url, func(r report.Report) bool {
			return r.Requests == na+nb && len(r.Shadows) == 1 && r.Shadows[0].Traffic.OK == na+nb &&
				r.Shadows[0].Accuracy != nil && r.Shadows[0].Accuracy.Labelled == nb
		})
		got := map[string]int64{}
		for _, rr := range rep.Replicas {
			got[rr.Replica] = rr.Requests
		}
		if got["replica-a"] != na || got["replica-b"] != nb || len(got) != 2 {
			t.Errorf("report on %s: per-replica requests %v, want replica-a %d and replica-b %d", p.url, got, na, nb)
		}
	}
	// The page shows the breakdown too.
	page := testRequest(t, "GET", a.url+"/report?window=all", nil)
	if !strings.Contains(string(page.Body), `id="replicas"`) || !strings.Contains(string(page.Body), "replica-a") || !strings.Contains(string(page.Body), "replica-b") {
		t.Errorf("the report page on a has no breakdown naming both replicas")
	}
	// Events from both replicas, each labelled.
	r := testRequest(t, "GET", b.url+"/events?limit=500", nil)
	seen := map[string]bool{}
	var evs struct {
		Events []struct{ Replica, Kind string }
	}
	if err := json.Unmarshal(r.Body, &evs); err != nil {
		t.Fatalf("events: %v: %s", err, r.Body)
	}
	for _, ev := range evs.Events {
		seen[ev.Replica] = true
	}
	if !seen["replica-a"] || !seen["replica-b"] {
		t.Errorf("events on b come from replicas %v, want both", seen)
	}
}

// Ensure a promote on one replica reaches the others within a second with
// no failed request under load, a rollback likewise, and that a replica
// without the promoted file keeps serving and says so.
func TestReplicasFollowPromoteUnderLoad(t *testing.T) {
	db := pgtest.URL(t)
	a, b := replica(t, db, "replica-a"), replica(t, db, "replica-b")
	// c lacks iris-v2: it must keep serving iris-v1 and say why.
	c := replica(t, db, "replica-c")
	if err := os.Remove(filepath.Join(strings.TrimSuffix(modelsDirOf(t, c), "/"), "iris-v2.onnx")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, c.url, "c unloads iris-v2", func(ms []modelView) bool { return find(ms, "iris-v2", "") == nil })

	x := holdout(t).Holdout.X32()
	var stop atomic.Bool
	var failed, sent atomic.Int64
	var wg sync.WaitGroup
	for _, p := range []*proc{a, b, c} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				// Not testRequest: t.Fatal must not be called off the
				// test's goroutine.
				resp, err := http.Post(p.url+"/predict", "application/json", bytes.NewReader(rowBody("", x[i%len(x)])))
				sent.Add(1)
				if err != nil {
					failed.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failed.Add(1)
				}
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	if r := admin(t, "POST", a.url+"/models/iris-v2/promote", adminToken, nil); r.Status != 200 {
		t.Fatalf("promote on a: %d %s", r.Status, r.Body)
	}
	promoted := time.Now()
	waitFor(t, b.url, "b follows the promote", func(ms []modelView) bool { return find(ms, "iris-v2", "primary") != nil })
	d := time.Since(promoted)
	if d > time.Second {
		t.Errorf("b followed the promote after %v, want within 1s", d)
	}
	t.Logf("b served the promoted model %v after the promote on a", d)
	// c keeps iris-v1 and says why.
	var ready map[string]any
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		r := testRequest(t, "GET", c.url+"/readyz", nil)
		ready = r.json(t)
		if r.Status != 200 {
			t.Fatalf("c's /readyz = %d, want 200 (degraded, still serving)", r.Status)
		}
		if ready["status"] == "degraded" || time.Now().After(deadline) {
			break
		}
	}
	if ready["status"] != "degraded" || !strings.Contains(fmt.Sprint(ready["warnings"]), "iris-v2") {
		t.Errorf("c's /readyz = %v, want degraded naming the missing iris-v2", ready)
	}
	if find(listModels(t, c.url), "iris-v1", "primary") == nil {
		t.Errorf("c no longer serves iris-v1")
	}

	if r := admin(t, "POST", b.url+"/models/rollback", adminToken, nil); r.Status != 200 {
		t.Fatalf("rollback on b: %d %s", r.Status, r.Body)
	}
	rolled := time.Now()
	waitFor(t, a.url, "a follows the rollback", func(ms []modelView) bool { return find(ms, "iris-v1", "primary") != nil })
	if d := time.Since(rolled); d > time.Second {
		t.Errorf("a followed the rollback after %v, want within 1s", d)
	} else {
		t.Logf("a served the rolled-back model %v after the rollback on b", d)
	}
	time.Sleep(300 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	if failed.Load() != 0 {
		t.Errorf("%d of %d requests failed during promote and rollback", failed.Load(), sent.Load())
	}
	t.Logf("%d requests over three replicas during promote and rollback, %d failed", sent.Load(), failed.Load())
	if sent.Load() < 30 {
		t.Errorf("only %d requests sent under load", sent.Load())
	}
	// c serves the shared primary again, and the warning is gone.
	r := testRequest(t, "GET", c.url+"/readyz", nil)
	if got := r.json(t); got["status"] != "ready" {
		t.Errorf("c's /readyz after the rollback = %v, want ready", got)
	}
}

// modelsDirOf returns the models directory a process was started with.
func modelsDirOf(tb testing.TB, p *proc) string {
	tb.Helper()
	for i, a := range p.cmd.Args {
		if a == "--models-dir" && i+1 < len(p.cmd.Args) {
			return p.cmd.Args[i+1]
		}
	}
	tb.Fatal("no --models-dir")
	return ""
}

// Ensure a replica killed with kill -9 loses at most its unflushed batch
// and the others keep serving and storing as before.
func TestReplicaKilledLeavesOthersAlone(t *testing.T) {
	db := pgtest.URL(t)
	a, b := replica(t, db, "replica-a"), replica(t, db, "replica-b")
	x := holdout(t).Holdout.X32()
	for i := range 30 {
		if r := testRequest(t, "POST", b.url+"/predict", rowBody(fmt.Sprintf("b-%d", i), x[i%len(x)])); r.Status != 200 {
			t.Fatalf("predict on b: %d", r.Status)
		}
	}
	// Longer than b's flush interval (50 ms): these rows are committed.
	time.Sleep(300 * time.Millisecond)
	if err := b.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	b.cmd.Wait()
	for i := range 20 {
		if r := testRequest(t, "POST", a.url+"/predict", rowBody(fmt.Sprintf("a-%d", i), x[i%len(x)])); r.Status != 200 {
			t.Fatalf("predict on a after b was killed: %d %s", r.Status, r.Body)
		}
	}
	rep := pollReport(t, a.url, "a after b was killed", func(r report.Report) bool { return r.Requests == 50 })
	got := map[string]int64{}
	for _, rr := range rep.Replicas {
		got[rr.Replica] = rr.Requests
	}
	if got["replica-a"] != 20 || got["replica-b"] != 30 {
		t.Errorf("per-replica requests %v after kill -9 of b, want a 20 and b 30", got)
	}
}
