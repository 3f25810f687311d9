// Package storetest is the conformance suite of the store contract, in the
// manner of testing/fstest.TestFS and Vault's physical.ExerciseBackend: a
// backend's test file opens a real instance and calls Run, and the suite
// checks, through the contract only, that what is written reads back, that
// rollups equal sums computed here from the rows written, at every span,
// and that retention, labels, concurrent writers, pairs and flushes behave
// as pkg/store documents.
//
// It may import pkg/store, pkg/understudy and the standard library (and
// testing) only: never a backend, never the report. The report's figures on
// every backend are checked by report/reporttest.
package storetest

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/understudy-ml/understudy/pkg/store"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// Opener opens a fresh, empty store for one test and closes it when the
// test ends (tb.Cleanup). The store must use the real clock, keep inputs of
// a few hundred bytes but not of 2 MiB, and apply no retention on its own.
type Opener func(tb testing.TB) store.Store

// Reopener makes a fresh, empty database for one test and returns open,
// which opens a store on it, the same database at every call, as Opener
// would: for the tests of what survives a restart. The test closes each
// store before it opens the next; those it leaves open are closed when it
// ends.
type Reopener func(tb testing.TB) (open func() store.Store)

// Run runs the suite against the stores open returns, each test on a store
// of its own.
func Run(t *testing.T, open Opener) {
	for _, tt := range []struct {
		name string
		test func(*testing.T, Opener)
	}{
		{"RoundTrip", testRoundTrip},
		{"Duplicates", testDuplicates},
		{"Skips", testSkips},
		{"Labels", testLabels},
		{"Events", testEvents},
		{"Deployment", testDeployment},
		{"Models", testModels},
		{"ByteOrder", testByteOrder},
		{"RollupsMatchRaw", testRollupsMatchRaw},
		{"RawReads", testRawReads},
		{"Accuracy", testAccuracy},
		{"PairsSearch", testPairsSearch},
		{"PairsFilters", testPairsFilters},
		{"RetentionDaysAndRows", testRetention},
		{"RetentionTrimsRollupsWhole", testRetentionRollups},
		{"ConcurrentWriters", testConcurrentWriters},
		{"Flush", testFlush},
		{"SnapshotIsolation", testSnapshotIsolation},
		{"Served", testServed},
		{"Close", testClose},
		{"OriginRoundTrip", testOriginRoundTrip},
		{"OriginRollups", testOriginRollups},
		{"Backlog", testBacklog},
		{"Drops", testDrops},
		{"StoredInputs", testStoredInputs},
		{"RecentInputs", testRecentInputs},
		{"RetentionBacklog", testRetentionBacklog},
	} {
		t.Run(tt.name, func(t *testing.T) { tt.test(t, open) })
	}
}

// RunReopen runs the tests that close a store and open its database
// again, each on a database of its own.
func RunReopen(t *testing.T, reopen Reopener) {
	for _, tt := range []struct {
		name string
		test func(*testing.T, Reopener)
	}{
		{"History", testHistoryReopen},
	} {
		t.Run(tt.name, func(t *testing.T) { tt.test(t, reopen) })
	}
}

// flush waits for everything written to be committed, and fails the test
// if any row was lost: the suite never fills a queue.
func flush(tb testing.TB, st store.Store) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := st.Flush(ctx); err != nil {
		tb.Fatalf("Flush: %v", err)
	}
	if s := st.Stats(); s.Predictions.Lost+s.ShadowResults.Lost+s.Skips.Lost > 0 {
		tb.Fatalf("rows lost: %+v", s)
	}
}

// holdBack waits while the writer's queue is over half full, so that a
// producer faster than the writer never loses rows.
func holdBack(st store.Store) {
	for s := st.Stats(); s.QueueCapacity > 0 && s.QueueDepth > s.QueueCapacity/2; s = st.Stats() {
		time.Sleep(200 * time.Microsecond)
	}
}

// snapshot opens a snapshot that the test closes.
func snapshot(tb testing.TB, st store.Store) store.Snapshot {
	tb.Helper()
	s, err := st.Snapshot(context.Background())
	if err != nil {
		tb.Fatalf("Snapshot: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("Snapshot.Close: %v", err)
		}
	})
	return s
}

// pairs reads the pairs f selects through a snapshot of their own.
func pairs(tb testing.TB, st store.Store, f store.PairFilter) []store.PairRecord {
	tb.Helper()
	ctx := context.Background()
	s, err := st.Snapshot(ctx)
	if err != nil {
		tb.Fatalf("Snapshot: %v", err)
	}
	defer s.Close()
	got, err := s.Pairs(ctx, f)
	if err != nil {
		tb.Fatalf("Pairs(%+v): %v", f, err)
	}
	return got
}

// request reads what is stored about id; nil when nothing is.
func request(tb testing.TB, st store.Store, id string) *store.StoredRequest {
	tb.Helper()
	ctx := context.Background()
	s, err := st.Snapshot(ctx)
	if err != nil {
		tb.Fatalf("Snapshot: %v", err)
	}
	defer s.Close()
	r, err := s.Request(ctx, id)
	if understudy.ErrorCode(err) == understudy.ENOTFOUND {
		return nil
	} else if err != nil {
		tb.Fatalf("Request(%q): %v", id, err)
	}
	return r
}

func ptr[T any](v T) *T { return &v }

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

func assertEqual[T comparable](tb testing.TB, name string, got, want T) {
	tb.Helper()
	if got != want {
		tb.Errorf("%s = %v, want %v", name, got, want)
	}
}

// assertClose compares sums that a backend may add in another order: a
// relative error of a few ulps per term, far below any digit shown.
func assertClose(tb testing.TB, name string, got, want float64) {
	tb.Helper()
	if got == want || math.Abs(got-want) <= 1e-12*math.Abs(want) {
		return
	}
	tb.Errorf("%s = %.17g, want %.17g", name, got, want)
}

// window names [from, to) in a test's name.
func window(from, to time.Time) string {
	f := func(t time.Time) string {
		if t.IsZero() {
			return "open"
		}
		return t.Format("Jan 2 15:04:05")
	}
	return "[" + f(from) + ", " + f(to) + ")"
}

// str prints values for comparison in messages.
func str(v any) string { return fmt.Sprintf("%+v", v) }
