package postgres_test

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver of database/sql, for goose
	"github.com/pressly/goose/v3"

	"github.com/understudy-ml/understudy/internal/pgtest"
	"github.com/understudy-ml/understudy/migrations"
	"github.com/understudy-ml/understudy/pkg/postgres"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// Ensure migrating down from the origins (00005) folds the rollups of
// backfills and backtests into the live ones, so that the rollups still add
// up to the rows, and that migrating up again keeps them so.
func TestOriginsDown(t *testing.T) {
	url := pgtest.URL(t)
	db, err := postgres.Open(context.Background(), url, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	const n = 30
	for i := range n {
		// The same minutes for every origin, so that their rollup rows
		// share keys.
		p, s := pair(fmt.Sprint(i), at.Add(time.Duration(i%5)*time.Minute), understudy.Origins[i%3])
		db.WritePrediction(p)
		db.WriteShadowResult(s)
	}
	db.Defer(understudy.DeferredJob{RequestID: "0", Shadow: "iris-v3", Version: "v", Time: at})
	db.CountDrops("iris-v2", "ba9876543210", at, understudy.DropExpired, 2)
	flush(t, db)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	checkStored(t, url, n)

	sqldb, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	defer sqldb.Close()
	sub, err := fs.Sub(migrations.Postgres, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, sqldb, sub, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.DownTo(context.Background(), 4); err != nil {
		t.Fatalf("down: %v", err)
	}
	checkStored(t, url, n)
	c := conn(t, url)
	var rows, dropped int64
	if err := c.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM shadow_rollups WHERE span = 1), (SELECT sum(dropped) FROM shadow_skips)`).Scan(&rows, &dropped); err != nil {
		t.Fatal(err)
	}
	if rows != 5 || dropped != 2 {
		t.Errorf("after down: %d minute rollups, %d dropped; want 5 and 2", rows, dropped)
	}

	db = open(t, url, postgres.Options{}) // up again
	checkStored(t, url, n)
	s := snap(t, db)
	sk, err := s.SkipCounts(context.Background(), "iris-v2", "ba9876543210", time.Time{}, time.Time{})
	if err != nil || sk.Dropped != 2 || sk.Reasons[understudy.DropShed] != 2 {
		t.Errorf("skips after down and up: %+v, %v; want 2 dropped, shed", sk, err)
	}
}
