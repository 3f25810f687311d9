package postgres_test

import (
	"context"
	"testing"

	"github.com/understudy-ml/understudy/internal/pgtest"
	"github.com/understudy-ml/understudy/pkg/postgres"
	"github.com/understudy-ml/understudy/pkg/report/reporttest"
	"github.com/understudy-ml/understudy/pkg/store"
	"github.com/understudy-ml/understudy/pkg/store/storetest"
)

// opener opens a store on a fresh database of the throwaway cluster.
func opener(opts postgres.Options) storetest.Opener {
	return func(tb testing.TB) store.Store {
		tb.Helper()
		return open(tb, pgtest.URL(tb), opts)
	}
}

// open opens a store on url and closes it when the test ends.
func open(tb testing.TB, url string, opts postgres.Options) *postgres.DB {
	tb.Helper()
	db, err := postgres.Open(context.Background(), url, opts)
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

// Ensure the PostgreSQL store meets the store contract, with the default
// batches and with batches small enough to add to the rollups often.
func TestStore(t *testing.T) {
	t.Run("default", func(t *testing.T) { storetest.Run(t, opener(postgres.Options{})) })
	t.Run("small batches", func(t *testing.T) { storetest.Run(t, opener(postgres.Options{BatchSize: 7})) })
}

// Ensure the report's figures on PostgreSQL match those computed from the
// rows: the same test, with the same expected numbers, as on SQLite.
func TestReport(t *testing.T) { reporttest.Run(t, opener(postgres.Options{})) }

// BenchmarkBuildMillion measures the report over a million pairs:
//
//	scripts/pg-throwaway.sh -- go test -run NONE -bench BuildMillion ./pkg/postgres/
func BenchmarkBuildMillion(b *testing.B) {
	reporttest.Benchmark(b, opener(postgres.Options{}))
}
