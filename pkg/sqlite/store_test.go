package sqlite_test

import (
	"path/filepath"
	"testing"

	"github.com/understudy-ml/understudy/pkg/report/reporttest"
	"github.com/understudy-ml/understudy/pkg/sqlite"
	"github.com/understudy-ml/understudy/pkg/store"
	"github.com/understudy-ml/understudy/pkg/store/storetest"
)

// opener opens real database files under the test's temporary directory.
func opener(opts sqlite.Options) storetest.Opener {
	return func(tb testing.TB) store.Store {
		tb.Helper()
		db, err := sqlite.Open(filepath.Join(tb.TempDir(), "understudy.db"), opts)
		if err != nil {
			tb.Fatalf("Open: %v", err)
		}
		tb.Cleanup(func() {
			if err := db.Close(); err != nil {
				tb.Errorf("Close: %v", err)
			}
		})
		return db
	}
}

// reopener opens stores on one database file under the test's temporary
// directory.
func reopener(opts sqlite.Options) storetest.Reopener {
	return func(tb testing.TB) func() store.Store {
		tb.Helper()
		path := filepath.Join(tb.TempDir(), "understudy.db")
		return func() store.Store {
			tb.Helper()
			db, err := sqlite.Open(path, opts)
			if err != nil {
				tb.Fatalf("Open: %v", err)
			}
			tb.Cleanup(func() {
				if err := db.Close(); err != nil {
					tb.Errorf("Close: %v", err)
				}
			})
			return db
		}
	}
}

// Ensure the SQLite store meets the store contract, with everything
// committed on the writer's thread and with shadow results committed apart
// on a thread of their own in batches small enough to merge rollups often.
func TestStore(t *testing.T) {
	t.Run("one thread", func(t *testing.T) {
		storetest.Run(t, opener(sqlite.Options{}))
		storetest.RunReopen(t, reopener(sqlite.Options{}))
	})
	t.Run("shadow thread", func(t *testing.T) {
		storetest.Run(t, opener(sqlite.Options{BatchSize: 7, ShadowNice: 10}))
		storetest.RunReopen(t, reopener(sqlite.Options{BatchSize: 7, ShadowNice: 10}))
	})
}

// Ensure the report's figures on SQLite match those computed from the rows.
func TestReport(t *testing.T) { reporttest.Run(t, opener(sqlite.Options{})) }

// BenchmarkBuildMillion measures the report over a million pairs:
//
//	go test -run NONE -bench BuildMillion ./pkg/sqlite/
func BenchmarkBuildMillion(b *testing.B) {
	reporttest.Benchmark(b, opener(sqlite.Options{}))
}
