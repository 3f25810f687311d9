package postgres_test

import (
	"context"
	"net/url"
	"strings"
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

// reopener opens stores on one fresh database of the throwaway cluster.
func reopener(opts postgres.Options) storetest.Reopener {
	return func(tb testing.TB) func() store.Store {
		tb.Helper()
		url := pgtest.URL(tb)
		return func() store.Store {
			tb.Helper()
			return open(tb, url, opts)
		}
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
	t.Run("default", func(t *testing.T) {
		storetest.Run(t, opener(postgres.Options{}))
		storetest.RunReopen(t, reopener(postgres.Options{}))
	})
	t.Run("small batches", func(t *testing.T) {
		storetest.Run(t, opener(postgres.Options{BatchSize: 7}))
		storetest.RunReopen(t, reopener(postgres.Options{BatchSize: 7}))
	})
	// A database whose default collation orders "B" after "a": names must
	// still come back in byte order.
	t.Run("ICU collation", func(t *testing.T) {
		storetest.Run(t, func(tb testing.TB) store.Store { return open(tb, icuURL(tb), postgres.Options{}) })
	})
}

// icuURL creates a database whose default collation is ICU's English, and
// drops it when the test ends.
func icuURL(tb testing.TB) string {
	tb.Helper()
	admin := pgtest.Admin(tb)
	u, err := url.Parse(pgtest.URL(tb)) // for a unique name, and the lock
	if err != nil {
		tb.Fatal(err)
	}
	name := strings.TrimPrefix(u.Path, "/") + "_icu"
	c := conn(tb, admin)
	if _, err := c.Exec(context.Background(), "CREATE DATABASE "+name+" TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en' LOCALE 'C.UTF-8'"); err != nil {
		tb.Skipf("no ICU collation on this server: %v", err)
	}
	tb.Cleanup(func() {
		_, _ = conn(tb, admin).Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	u.Path = "/" + name
	return u.String()
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
