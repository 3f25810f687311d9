package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/understudy-ml/understudy/internal/pgtest"
	"github.com/understudy-ml/understudy/pkg/postgres"
	"github.com/understudy-ml/understudy/pkg/store"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// These tests stop and start the cluster's server (pgtest.Lock keeps the
// other packages' tests off it meanwhile); none of them runs in parallel.

// waitDegraded waits up to 10 s for db to say it is degraded.
func waitDegraded(tb testing.TB, db *postgres.DB) string {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for db.Degraded() == "" {
		if time.Now().After(deadline) {
			tb.Fatal("Degraded() still empty 10 s after the server stopped")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return db.Degraded()
}

// Ensure rows handed over while PostgreSQL is down are buffered without
// blocking anyone, that Degraded says so, and that once the server is back
// every row is stored exactly once and counted once into the rollups.
func TestOutageBuffersAndRecovers(t *testing.T) {
	pgtest.Lock(t)
	url := pgtest.URL(t)
	db := open(t, url, postgres.Options{FlushInterval: 10 * time.Millisecond, BatchSize: 200})
	at := time.Date(2030, 6, 1, 23, 50, 0, 0, time.UTC) // the rows cross an hour and a day
	writePairs(db, "before-", 300, at)
	flush(t, db)
	if got := db.Degraded(); got != "" {
		t.Fatalf("Degraded() = %q while the server is up", got)
	}

	pgtest.Stop(t)
	spent := writePairs(db, "during-", 50, at.Add(time.Hour))
	msg := waitDegraded(t, db)
	spent += writePairs(db, "during-more-", 450, at.Add(2*time.Hour))
	// The backlog's writes are buffered like the rest.
	start := time.Now()
	for i := range 10 {
		db.Defer(understudy.DeferredJob{RequestID: fmt.Sprint("during-", i), Shadow: "iris-v2", Version: "ba9876543210", Time: at.Add(time.Hour)})
	}
	db.CountDrops("iris-v2", "ba9876543210", at, understudy.DropBacklogFull, 5)
	spent += time.Since(start)
	if spent > 2*time.Second {
		t.Errorf("handing over 500 pairs while the server is down took %v: writes must never block", spent)
	}
	if !strings.Contains(msg, "PostgreSQL unreachable since") || !strings.Contains(msg, "rows buffered") {
		t.Errorf("Degraded() = %q", msg)
	}
	t.Logf("Degraded() = %q", msg)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	if err := db.Flush(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Flush while the server is down = %v, want the context's deadline", err)
	}
	cancel()
	if b := db.Buffer(); b.Rows < 1000 || b.Retries == 0 || b.DroppedWhileDown != 0 {
		t.Errorf("Buffer() = %+v; want ≥ 1000 rows (the last pairs may still be queued), retries, no drops", b)
	}

	pgtest.Start(t)
	flush(t, db)
	if got := db.Degraded(); got != "" {
		t.Errorf("Degraded() = %q after the server is back and the rows are flushed", got)
	}
	st := db.Stats()
	for name, ts := range map[string]int64{"predictions": st.Predictions.Written, "shadow results": st.ShadowResults.Written, "skips": st.Skips.Written - 11} {
		if ts != 800 {
			t.Errorf("%s written = %d, want 800", name, ts)
		}
	}
	if n, err := db.PendingJobs(context.Background()); n != 10 || err != nil {
		t.Errorf("PendingJobs = %d, %v; want the 10 deferred while down", n, err)
	}
	if lost := st.Predictions.Lost + st.ShadowResults.Lost + st.Skips.Lost; lost != 0 {
		t.Errorf("%d rows lost, want none: %+v", lost, st)
	}
	checkStored(t, url, 800)
	var skips int64
	var deferred, dropped int64
	if err := conn(t, url).QueryRow(context.Background(), `SELECT sum(sampled_out), sum(deferred), sum(dropped) FROM shadow_skips`).
		Scan(&skips, &deferred, &dropped); err != nil || skips != 800 || deferred != 10 || dropped != 5 {
		t.Errorf("skips stored %d, deferred %d, dropped %d, %v; want 800, 10, 5", skips, deferred, dropped, err)
	}
}

// Ensure that beyond MaxBufferedRows the rows handed over while the server
// is down are dropped and counted, lost and dropped while down, that the
// rows that fit are stored once it is back, and that Close while it is
// down gives up after CloseTimeout, counting what it held as lost.
func TestOutageDropsBeyondBuffer(t *testing.T) {
	pgtest.Lock(t)
	url := pgtest.URL(t)
	db := open(t, url, postgres.Options{FlushInterval: 10 * time.Millisecond, MaxBufferedRows: 50, CloseTimeout: 500 * time.Millisecond})
	at := time.Date(2030, 6, 1, 8, 0, 0, 0, time.UTC)
	pgtest.Stop(t)
	writePairs(db, "first-", 1, at) // 3 rows: a prediction, a shadow result, a skip
	waitDegraded(t, db)
	writePairs(db, "more-", 100, at)
	// Wait for the writer to take everything from its queue.
	deadline := time.Now().Add(10 * time.Second)
	for db.Stats().QueueDepth > 50 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	st, b := db.Stats(), db.Buffer()
	lost := st.Predictions.Lost + st.ShadowResults.Lost + st.Skips.Lost
	if b.Rows != 50 || lost != 303-50 || b.DroppedWhileDown != lost {
		t.Errorf("buffered %d rows, lost %d, dropped while down %d; want 50, 253, 253", b.Rows, lost, b.DroppedWhileDown)
	}

	start := time.Now()
	if err := db.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Close while the server is down took %v, want about CloseTimeout (0.5 s)", d)
	}
	st = db.Stats()
	if lost := st.Predictions.Lost + st.ShadowResults.Lost + st.Skips.Lost; lost != 303 {
		t.Errorf("after Close, %d rows lost, want all 303", lost)
	}
	pgtest.Start(t)
	checkStored(t, url, 0)
}

// Ensure a server stopped and started while rows keep coming, batches in
// flight, still ends with every row stored once and counted once: written,
// or duplicate if an attempt whose commit was not acknowledged did commit,
// and in the rollups exactly once either way.
func TestOutageWhileWriting(t *testing.T) {
	pgtest.Lock(t)
	url := pgtest.URL(t)
	db := open(t, url, postgres.Options{FlushInterval: 5 * time.Millisecond, BatchSize: 100})
	at := time.Date(2030, 6, 1, 23, 30, 0, 0, time.UTC)
	const n = 3000
	done := make(chan struct{})
	go func() {
		defer close(done)
		for k := range 30 {
			writePairs(db, fmt.Sprintf("w%02d-", k), n/30, at.Add(time.Duration(k)*time.Minute))
			time.Sleep(20 * time.Millisecond)
		}
	}()
	time.Sleep(100 * time.Millisecond)
	pgtest.Stop(t)
	time.Sleep(300 * time.Millisecond)
	pgtest.Start(t)
	<-done
	flush(t, db)
	st := db.Stats()
	for name, ts := range map[string]store.TableStats{"predictions": st.Predictions, "shadow results": st.ShadowResults} {
		if ts.Written+ts.Duplicate != n || ts.Lost != 0 {
			t.Errorf("%s: %+v; want %d written or duplicate, none lost", name, ts, n)
		}
	}
	t.Logf("stats %+v, buffer %+v", st, db.Buffer())
	checkStored(t, url, n)
}
