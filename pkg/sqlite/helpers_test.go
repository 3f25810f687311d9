package sqlite_test

import (
	"bytes"
	"context"
	"database/sql"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/understudy-ml/understudy/pkg/sqlite"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// This file holds the helpers the tests of this package share: a database in
// a temporary directory, sample pairs written and flushed, row counts,
// tensors to compare, and a log that counts its lines.

// openDB opens a database in a fresh temporary directory and closes it when
// the test ends.
func openDB(tb testing.TB, opts sqlite.Options) (*sqlite.DB, string) {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "understudy.db")
	db, err := sqlite.Open(path, opts)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() {
		if err := db.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return db, path
}

// writePairs hands the store n predictions with a shadow result each, with
// ids prefix0, prefix1…
func writePairs(db *sqlite.DB, prefix string, n int, at time.Time) {
	for i := range n {
		p, s := sqlite.SamplePair(prefix+strconv.Itoa(i), at)
		db.WritePrediction(p)
		db.WriteShadowResult(s)
	}
}

func flush(tb testing.TB, db *sqlite.DB) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := db.Flush(ctx); err != nil {
		tb.Fatalf("Flush: %v", err)
	}
}

func counts(tb testing.TB, db *sqlite.DB) (predictions, shadowResults int64) {
	tb.Helper()
	p, s, err := db.Counts(context.Background())
	if err != nil {
		tb.Fatalf("Counts: %v", err)
	}
	return p, s
}

func queryInt(tb testing.TB, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, query string, args ...any) int64 {
	tb.Helper()
	var n int64
	if err := q.QueryRowContext(context.Background(), query, args...).Scan(&n); err != nil {
		tb.Fatalf("%s: %v", query, err)
	}
	return n
}

// logBuffer collects log lines from the writer goroutine.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.buf.String(), s)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func f64(v float64) *float64 { return &v }
func i64(v int64) *int64     { return &v }

func tensor(dt understudy.DType, shape []int64, data any) *understudy.Tensor {
	return &understudy.Tensor{DType: dt, Shape: shape, Data: data}
}
