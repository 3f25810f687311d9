package postgres_test

import (
	"context"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/understudy-ml/understudy/internal/pgtest"
	"github.com/understudy-ml/understudy/pkg/postgres"
)

// Ensure Open fails quickly on an unreachable server, and that its error
// names the database without ever showing the password.
func TestOpenErrorsHideThePassword(t *testing.T) {
	good, err := url.Parse(pgtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	missing := *good
	missing.User = url.UserPassword("postgres", "s3cret-pw")
	missing.Path = "/no_such_database"
	for _, tt := range []struct {
		name, url, want string
	}{
		{"unreachable", "postgres://postgres:s3cret-pw@127.0.0.1:1/db?sslmode=disable", "postgres@127.0.0.1:1/db"},
		{"no such database", missing.String(), "postgres@" + good.Hostname() + ":" + good.Port() + "/no_such_database"},
		{"unparsable", "postgres://postgres:s3cret-pw@[::1/db", "cannot parse"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			db, err := postgres.Open(context.Background(), tt.url, postgres.Options{ConnectTimeout: 2 * time.Second})
			if err == nil {
				db.Close()
				t.Fatal("Open succeeded")
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("Open took %v to fail", d)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error shows the password: %v", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
			t.Log(err)
		})
	}
}

// Ensure replicas starting together on an empty database all migrate it
// without racing (goose's advisory lock).
func TestOpenTogether(t *testing.T) {
	u := pgtest.URL(t)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() { open(t, u, postgres.Options{}) })
	}
	wg.Wait()
}

// Ensure two replicas writing rows of the same minutes at once, into the
// same rollup rows, lose nothing: every row is stored once, stamped with
// its replica, and the rollups equal the sums over the rows.
func TestReplicasShareRollups(t *testing.T) {
	u := pgtest.URL(t)
	at := time.Date(2030, 6, 1, 23, 0, 0, 0, time.UTC)
	dbs := []*postgres.DB{open(t, u, postgres.Options{Replica: "a", BatchSize: 50}), open(t, u, postgres.Options{Replica: "b", BatchSize: 50})}
	var wg sync.WaitGroup
	for i, db := range dbs {
		wg.Go(func() {
			prefix := string(rune('a'+i)) + "-"
			for k := range 10 {
				writePairs(db, prefix+string(rune('0'+k))+"-", 200, at)
			}
			flush(t, db)
		})
	}
	wg.Wait()
	checkStored(t, u, 4000)
	c := conn(t, u)
	for _, r := range []string{"a", "b"} {
		var n int64
		if err := c.QueryRow(context.Background(), `SELECT count(*) FROM shadow_results WHERE replica = $1`, r).Scan(&n); err != nil || n != 2000 {
			t.Errorf("replica %s: %d shadow results, %v; want 2000", r, n, err)
		}
	}
}
