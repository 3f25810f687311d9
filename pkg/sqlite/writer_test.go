package sqlite_test

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/understudy-ml/understudy/pkg/sqlite"
	"github.com/understudy-ml/understudy/pkg/store"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// These tests are about the writer: rows batched and flushed on time, Close
// draining the queue, and a full queue or a full disk losing rows, counted
// and logged, without ever blocking the caller.

// Ensure N rows written and flushed are exactly N rows, whatever N is
// relative to the batch size.
func TestBatching(t *testing.T) {
	for _, n := range []int{1, 99, 100, 101, 2500} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			db, _ := openDB(t, sqlite.Options{BatchSize: 100})
			at := time.Now()
			for i := range n {
				p, s := sqlite.SamplePair(fmt.Sprint(i), at)
				db.WritePrediction(p)
				db.WriteShadowResult(s)
			}
			flush(t, db)
			gotP, gotS := counts(t, db)
			if gotP != int64(n) || gotS != int64(n) {
				t.Errorf("counts = %d, %d; want %d, %d", gotP, gotS, n, n)
			}
			st := db.Stats()
			if st.Predictions.Written != int64(n) || st.ShadowResults.Written != int64(n) {
				t.Errorf("written = %d, %d; want %d", st.Predictions.Written, st.ShadowResults.Written, n)
			}
			if min := int64((2*n + 99) / 100); st.Batches < min {
				t.Errorf("%d batches, want at least %d", st.Batches, min)
			}
		})
	}
}

// Ensure the flush interval bounds how long a row waits, not how many rows
// a second the writer takes: with full batches waiting it commits them back
// to back instead of one batch per interval.
func TestBacklogIsNotPacedByTheInterval(t *testing.T) {
	db, _ := openDB(t, sqlite.Options{BatchSize: 10, FlushInterval: time.Second})
	at := time.Now()
	const n = 500
	for i := range n {
		p, _ := sqlite.SamplePair(fmt.Sprint(i), at)
		db.WritePrediction(p)
	}
	// Paced by the interval this would take 50 s. The first row may wait
	// out one interval before the writer sees the backlog; after that all
	// but the last, partial batch must be written back to back.
	deadline := time.Now().Add(10 * time.Second)
	for db.Stats().Predictions.Written < n-10 {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d rows written after 10s with batches of 10 and a 1s flush interval", db.Stats().Predictions.Written, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Ensure Close commits everything queued, is safe to call twice, and counts
// rows written after it as lost.
func TestCloseDrains(t *testing.T) {
	path := filepath.Join(t.TempDir(), "understudy.db")
	db, err := sqlite.Open(path, sqlite.Options{FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	const n = 3000
	at := time.Now()
	for i := range n {
		p, s := sqlite.SamplePair(fmt.Sprint(i), at)
		db.WritePrediction(p)
		db.WriteShadowResult(s)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	p, _ := sqlite.SamplePair("late", at)
	db.WritePrediction(p)
	if err := db.Flush(context.Background()); err != nil {
		t.Errorf("Flush after Close: %v", err)
	}
	if got, want := db.Stats().Predictions, (store.TableStats{Written: n, Lost: 1}); got != want {
		t.Errorf("prediction stats = %+v, want %+v", got, want)
	}

	db, err = sqlite.Open(path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	gotP, gotS := counts(t, db)
	if gotP != n || gotS != n {
		t.Errorf("counts after reopen = %d, %d; want %d, %d", gotP, gotS, n, n)
	}
}

// Ensure a full queue counts rows as lost and never blocks the caller, while
// the writer is stuck behind another process's write lock.
func TestQueueFull(t *testing.T) {
	const queue, batch, total = 8, 4, 200
	db, path := openDB(t, sqlite.Options{QueueSize: queue, BatchSize: batch, FlushInterval: time.Millisecond})
	ctx := context.Background()

	other, err := sql.Open("sqlite3", "file:"+path+"?_txlock=immediate&_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	lock, err := other.BeginTx(ctx, nil)
	if err != nil {
		t.Fatalf("take the write lock: %v", err)
	}
	defer lock.Rollback()

	at := time.Now()
	var slowest time.Duration
	for i := range total {
		p, _ := sqlite.SamplePair(fmt.Sprint(i), at)
		start := time.Now()
		db.WritePrediction(p)
		slowest = max(slowest, time.Since(start))
	}
	if slowest > 50*time.Millisecond {
		t.Errorf("slowest WritePrediction took %v; want it never to block", slowest)
	}
	if got, want := db.Stats().QueueDepth, queue; got != want {
		t.Errorf("queue depth = %d, want %d", got, want)
	}
	if got, want := db.Stats().Predictions.Lost, int64(total-queue-batch); got < want {
		t.Errorf("lost = %d, want at least %d", got, want)
	}

	if err := lock.Rollback(); err != nil {
		t.Fatal(err)
	}
	flush(t, db)
	st := db.Stats().Predictions
	if got, want := st.Written+st.Lost, int64(total); got != want {
		t.Errorf("written %d + lost %d = %d, want %d", st.Written, st.Lost, got, want)
	}
	if got, _ := counts(t, db); got != st.Written || got == 0 {
		t.Errorf("%d rows stored, want written = %d > 0", got, st.Written)
	}
}

// Ensure a full disk loses rows without blocking callers, logs at most one
// line per interval, and that writes succeed again once there is room.
func TestDiskFull(t *testing.T) {
	logs := &logBuffer{}
	db, _ := openDB(t, sqlite.Options{MaxPageCount: 40, Log: zerolog.New(logs)})
	ctx := context.Background()
	big := make([]float32, 500) // about 2 KiB of JSON per row
	write := func(id string) time.Duration {
		t.Helper()
		start := time.Now()
		db.WritePrediction(&understudy.Prediction{ID: id, Model: "m", Version: "v", Status: "ok",
			Inputs: map[string]*understudy.Tensor{"x": tensor(understudy.Float32, []int64{1, 500}, big)}})
		took := time.Since(start)
		flush(t, db)
		return took
	}

	var slowest time.Duration
	i := 0
	for ; db.Stats().Predictions.Lost == 0; i++ {
		if i == 1000 {
			t.Fatal("the database never filled up")
		}
		slowest = max(slowest, write(fmt.Sprint(i)))
	}
	for range 5 {
		i++
		slowest = max(slowest, write(fmt.Sprint(i)))
	}
	if slowest > 50*time.Millisecond {
		t.Errorf("slowest WritePrediction took %v; want it never to block", slowest)
	}
	st := db.Stats()
	if got, want := st.Predictions.Lost, int64(6); got != want {
		t.Errorf("lost = %d, want %d", got, want)
	}
	if got, want := st.FailedBatches, int64(6); got != want {
		t.Errorf("failed batches = %d, want %d", got, want)
	}
	if got, want := logs.count("store write failed"), 1; got != want {
		t.Errorf("%d failure lines logged, want %d (rate limited); log:\n%s", got, want, logs)
	}
	if !strings.Contains(logs.String(), "database or disk is full") {
		t.Errorf("log does not name the error:\n%s", logs)
	}

	if _, err := db.WritePool().ExecContext(ctx, `PRAGMA max_page_count = 1000000`); err != nil {
		t.Fatal(err)
	}
	write("after")
	if _, err := db.Prediction(ctx, "after"); err != nil {
		t.Errorf("Prediction after the disk recovered: %v", err)
	}
	if got, want := db.Stats().Predictions.Written, st.Predictions.Written+1; got != want {
		t.Errorf("written = %d, want %d", got, want)
	}
	if logs.count("store writes succeed again") != 1 {
		t.Errorf("recovery not logged:\n%s", logs)
	}
}
