package main

import (
	"context"
	"flag"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/understudy-ml/understudy/pkg/postgres"
	"github.com/understudy-ml/understudy/pkg/report"
	"github.com/understudy-ml/understudy/pkg/sqlite"
	"github.com/understudy-ml/understudy/pkg/store"
)

// The store and report sections measure every backend the same way, side
// by side: SQLite always, PostgreSQL when a server is given (make bench runs
// through scripts/pg-throwaway.sh, which starts one).

// pgEnv is where scripts/pg-throwaway.sh puts its server's URL.
const pgEnv = "UNDERSTUDY_TEST_POSTGRES"

var pgURL = flag.String("postgres", os.Getenv(pgEnv),
	"PostgreSQL server for the store and report sections, e.g. postgres://user@127.0.0.1:5432/db (default $"+pgEnv+"); each run creates and drops a database of its own")

// backend opens a fresh store of one backend and removes it afterwards.
type backend struct {
	name string
	open func() (db store.Store, cleanup func(), err error)
}

// backends returns SQLite's and, with a server, PostgreSQL's variants of a
// measurement; pgVariants name the PostgreSQL options to measure.
func backends(sqliteOpts sqlite.Options, pgVariants map[string]postgres.Options, order ...string) []backend {
	out := []backend{{"SQLite", func() (store.Store, func(), error) {
		dir, err := os.MkdirTemp("", "understudy-bench-")
		if err != nil {
			return nil, nil, err
		}
		db, err := sqlite.Open(filepath.Join(dir, "bench.db"), sqliteOpts)
		if err != nil {
			os.RemoveAll(dir)
			return nil, nil, err
		}
		return db, func() { db.Close(); os.RemoveAll(dir) }, nil
	}}}
	if *pgURL == "" {
		return out
	}
	for _, name := range order {
		opts := pgVariants[name]
		out = append(out, backend{name, func() (store.Store, func(), error) {
			u, drop, err := pgDatabase(*pgURL)
			if err != nil {
				return nil, nil, err
			}
			db, err := postgres.Open(context.Background(), u, opts)
			if err != nil {
				drop()
				return nil, nil, err
			}
			return db, func() { db.Close(); drop() }, nil
		}})
	}
	return out
}

// benchStore measures each backend's sustained write rate.
func benchStore() error {
	fmt.Println("== store write rate (one prediction + one shadow result per pair, 200,000 pairs; target ≥ 20,000 rows/s) ==")
	if *pgURL == "" {
		fmt.Println("(no PostgreSQL: set -postgres or $" + pgEnv + ", or run through scripts/pg-throwaway.sh as make bench does)")
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "backend\trows/s\t")
	// As the server runs SQLite: shadow results on their own SCHED_IDLE
	// thread. PostgreSQL as the server's session sets it, then with
	// synchronous_commit forced on: the throwaway cluster runs with it
	// (and fsync) off, and a production server usually has it on.
	for _, b := range backends(sqlite.Options{ShadowIdle: true}, map[string]postgres.Options{
		"PostgreSQL (server's synchronous_commit)": {},
		"PostgreSQL (synchronous_commit=on)":       {SynchronousCommit: "on"},
	}, "PostgreSQL (server's synchronous_commit)", "PostgreSQL (synchronous_commit=on)") {
		rate, err := measureWrites(b, 200_000)
		if err != nil {
			return fmt.Errorf("%s: %w", b.name, err)
		}
		fmt.Fprintf(tw, "%s\t%.0f\t\n", b.name, rate)
	}
	tw.Flush()
	if *pgURL != "" {
		fmt.Printf("PostgreSQL server: %s\n", pgSettings(*pgURL))
	}
	fmt.Println()
	return nil
}

// measureWrites writes pairs of rows (iris-sized tensors) as fast as the
// writer takes them, and returns the rows committed per second, counting
// both rows of a pair. The producer holds back when the queue is half
// full, so the figure is the writer's sustained rate, not the queue's.
func measureWrites(b backend, pairs int) (float64, error) {
	db, cleanup, err := b.open()
	if err != nil {
		return 0, err
	}
	defer cleanup()
	start := time.Now()
	for i := range pairs {
		for st := db.Stats(); st.QueueDepth > st.QueueCapacity/2; st = db.Stats() {
			time.Sleep(100 * time.Microsecond)
		}
		p, s := sqlite.SamplePair(strconv.Itoa(i), start)
		db.WritePrediction(p)
		db.WriteShadowResult(s)
	}
	if err := db.Flush(context.Background()); err != nil {
		return 0, err
	}
	elapsed := time.Since(start)
	st := db.Stats()
	if lost := st.Predictions.Lost + st.ShadowResults.Lost; lost > 0 {
		return 0, fmt.Errorf("%d rows lost", lost)
	}
	return float64(st.Predictions.Written+st.ShadowResults.Written) / elapsed.Seconds(), nil
}

// benchReport fills each backend with 1,000,000 pairs through its writer
// and times the report over all of them.
func benchReport() error {
	fmt.Println("== report on 1,000,000 stored pairs, window \"all\" (target < 1s) ==")
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "backend\tfilled in\treport built in\t")
	for _, b := range backends(sqlite.Options{BatchSize: 5000, QueueSize: 1 << 16},
		map[string]postgres.Options{"PostgreSQL": {BatchSize: 5000, QueueSize: 1 << 16}}, "PostgreSQL") {
		db, cleanup, err := b.open()
		if err != nil {
			return fmt.Errorf("%s: %w", b.name, err)
		}
		fill, build, err := report.MeasureReport(db, 1_000_000)
		cleanup()
		if err != nil {
			return fmt.Errorf("%s: %w", b.name, err)
		}
		fmt.Fprintf(tw, "%s\t%v\t%v\t\n", b.name, fill.Round(time.Second), build.Round(time.Millisecond))
	}
	tw.Flush()
	fmt.Println()
	return nil
}

// pgDatabase creates an empty database on the server at admin for one
// measurement, and returns its URL and how to drop it.
func pgDatabase(admin string) (string, func(), error) {
	name := fmt.Sprintf("bench_%d", time.Now().UnixNano())
	if err := pgExec(admin, "CREATE DATABASE "+name+" TEMPLATE template0"); err != nil {
		return "", nil, fmt.Errorf("create database: %w", err)
	}
	u, err := url.Parse(admin)
	if err != nil {
		return "", nil, err
	}
	u.Path = "/" + name
	return u.String(), func() { _ = pgExec(admin, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)") }, nil
}

func pgExec(u, sql string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, u)
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	_, err = c.Exec(ctx, sql)
	return err
}

// pgSettings describes the server's durability settings, which the write
// rate depends on.
func pgSettings(u string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, u)
	if err != nil {
		return err.Error()
	}
	defer c.Close(context.Background())
	var version, sync, fsync string
	if err := c.QueryRow(ctx, `SELECT current_setting('server_version'), current_setting('synchronous_commit'), current_setting('fsync')`).Scan(&version, &sync, &fsync); err != nil {
		return err.Error()
	}
	s := fmt.Sprintf("PostgreSQL %s, synchronous_commit=%s and fsync=%s on the server; the last row sets synchronous_commit=on in each session", version, sync, fsync)
	if fsync == "off" {
		s += ", but with fsync off a commit still waits for no flush to disk (scripts/pg-throwaway.sh turns fsync off)"
	}
	return s
}
