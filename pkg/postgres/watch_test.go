package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/understudy-ml/understudy/internal/pgtest"
	"github.com/understudy-ml/understudy/pkg/postgres"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// watch starts db's deployment watcher until the test ends and returns
// what it delivers.
func watch(t *testing.T, db *postgres.DB) <-chan understudy.Deployment {
	t.Helper()
	got := make(chan understudy.Deployment, 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- db.WatchDeployment(ctx, func(d understudy.Deployment) { got <- d }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != context.Canceled {
			t.Errorf("WatchDeployment returned %v, want context.Canceled", err)
		}
	})
	// Let the watcher take its baseline and LISTEN.
	time.Sleep(300 * time.Millisecond)
	return got
}

// saveAndSee saves a deployment with primary name on a and waits up to
// within for b's watcher to deliver it.
func saveAndSee(t *testing.T, a *postgres.DB, seen <-chan understudy.Deployment, name string, within time.Duration) {
	t.Helper()
	start := time.Now()
	if err := a.SaveDeployment(context.Background(), understudy.Deployment{Primary: understudy.ModelRef{Name: name, Version: "v1"}}); err != nil {
		t.Fatal(err)
	}
	timeout := time.After(within)
	for {
		select {
		case d := <-seen:
			if d.Primary.Name == name {
				t.Logf("%s seen after %v", name, time.Since(start).Round(time.Millisecond))
				return
			}
		case <-timeout:
			t.Fatalf("deployment %s not seen within %v", name, within)
		}
	}
}

// Ensure a deployment saved by one replica reaches another's watcher
// within a second: through LISTEN, through the poll when LISTEN hears
// nothing, and after the listening connection is killed.
func TestWatchDeployment(t *testing.T) {
	url := pgtest.URL(t)
	a := open(t, url, postgres.Options{Replica: "a"})
	t.Run("notify", func(t *testing.T) {
		b := open(t, url, postgres.Options{Replica: "b"})
		seen := watch(t, b)
		saveAndSee(t, a, seen, "first", time.Second)
		saveAndSee(t, a, seen, "second", time.Second)
		// Its own saves too: a replica learns of them like any other.
		saveAndSee(t, b, seen, "own", time.Second)
	})
	t.Run("poll alone", func(t *testing.T) {
		b := open(t, url, postgres.Options{Replica: "b"})
		postgres.SetDeploymentChannel(b, "nobody_notifies_this")
		seen := watch(t, b)
		// The poll runs every second: within about 1 s, with slack for a
		// loaded machine.
		saveAndSee(t, a, seen, "polled", 1500*time.Millisecond)
	})
	t.Run("listener killed", func(t *testing.T) {
		b := open(t, url, postgres.Options{Replica: "b"})
		seen := watch(t, b)
		c := conn(t, url)
		var killed int
		err := c.QueryRow(context.Background(), `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
			WHERE datname = current_database() AND query LIKE 'LISTEN%'`).Scan(&killed)
		if err != nil || killed == 0 {
			t.Fatalf("killed %d listeners, %v; want one", killed, err)
		}
		saveAndSee(t, a, seen, "after kill", 1500*time.Millisecond)
		// And it listens again.
		time.Sleep(500 * time.Millisecond)
		saveAndSee(t, a, seen, "relistened", time.Second)
	})
}
