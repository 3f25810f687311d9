// Package pgtest owns the test databases on the throwaway PostgreSQL cluster
// that scripts/pg-throwaway.sh starts (make test runs every test through it):
// each call to URL creates a fresh, empty database for one test and drops it
// when the test ends. It is for tests only; non-test code must not import it.
//
// The cluster's URL comes from UNDERSTUDY_TEST_POSTGRES. Where it is unset the
// PostgreSQL tests skip, unless UNDERSTUDY_REQUIRE_POSTGRES=1 (as in CI), where
// they fail.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sys/unix"
)

const (
	// EnvURL names the variable holding the throwaway cluster's URL.
	EnvURL = "UNDERSTUDY_TEST_POSTGRES"
	// EnvRequire, set to 1, turns a missing EnvURL from a skip into a failure.
	EnvRequire = "UNDERSTUDY_REQUIRE_POSTGRES"

	unsetMsg = EnvURL + " is not set; run the tests through scripts/pg-throwaway.sh (make test does)"

	// maxIdent is PostgreSQL's limit on an identifier's length (NAMEDATALEN-1).
	maxIdent = 63
	// timeout bounds each administrative step: connecting, creating, dropping.
	timeout = 30 * time.Second
)

// lookup decides, from the environment that getenv reads, which server the
// tests use: ok with its URL; not ok and no error to skip; an error to fail.
func lookup(getenv func(string) string) (u string, ok bool, err error) {
	u = getenv(EnvURL)
	if u == "" {
		if getenv(EnvRequire) == "1" {
			return "", false, errors.New(unsetMsg + ", and " + EnvRequire + "=1 requires it")
		}
		return "", false, nil
	}
	p, err := url.Parse(u)
	if err != nil {
		return "", false, fmt.Errorf("%s is not a URL: %w", EnvURL, err)
	}
	if p.Scheme != "postgres" && p.Scheme != "postgresql" {
		return "", false, fmt.Errorf("%s=%q: want a postgres:// URL", EnvURL, u)
	}
	return u, true, nil
}

// Admin returns the URL of the cluster's maintenance database (the one the
// script created), for tests that act on the server itself; a test must leave
// nothing behind in it.
func Admin(tb testing.TB) string {
	tb.Helper()
	u, ok, err := lookup(os.Getenv)
	if err != nil {
		tb.Fatal(err)
	}
	if !ok {
		tb.Skip(unsetMsg)
	}
	return u
}

// URL returns the URL of a new, empty database for this test alone, which is
// dropped (closing any connections still open to it) when the test ends.
func URL(tb testing.TB) string {
	tb.Helper()
	admin := Admin(tb)
	lockCluster(tb, unix.LOCK_SH)
	name, err := dbName(tb.Name())
	if err != nil {
		tb.Fatal(err)
	}
	ident := pgx.Identifier{name}.Sanitize()

	// template0 rather than template1: nothing anyone added to template1
	// leaks into the test's database.
	if err := exec(admin, "CREATE DATABASE "+ident+" TEMPLATE template0"); err != nil {
		tb.Fatalf("pgtest: creating database %s: %v", name, err)
	}
	tb.Cleanup(func() {
		if err := exec(admin, "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)"); err != nil {
			tb.Errorf("pgtest: dropping database %s: %v", name, err)
		}
	})

	p, err := url.Parse(admin)
	if err != nil { // lookup has parsed it already
		tb.Fatal(err)
	}
	p.Path = "/" + name
	p.RawPath = ""
	return p.String()
}

// exec runs one statement on its own connection to the server at u.
func exec(u, sql string) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}

// dbName makes a database name unique to one call, "t_<test>_<12 hex>", from
// the test's name lowercased with every run of other characters than a-z and
// 0-9 made one underscore, cut to fit PostgreSQL's 63 bytes.
func dbName(test string) (string, error) {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	suffix := "_" + hex.EncodeToString(b[:])

	var sb strings.Builder
	under := false
	for _, r := range strings.ToLower(test) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			sb.WriteRune(r)
			under = false
		} else if !under {
			sb.WriteByte('_')
			under = true
		}
	}
	mid := strings.Trim(sb.String(), "_")
	if room := maxIdent - len("t_") - len(suffix); len(mid) > room {
		mid = strings.TrimRight(mid[:room], "_")
	}
	if mid == "" {
		return "t" + suffix, nil
	}
	return "t_" + mid + suffix, nil
}

// Stopping the server: the tests of several packages share the cluster and
// run at once, in processes of their own, so a test that stops it first
// takes an exclusive lock on a file beside the data directory, and every
// URL holds a shared one until its test ends.

const (
	// EnvPGData names the variable holding the cluster's data directory.
	EnvPGData = "UNDERSTUDY_TEST_PGDATA"
	// EnvPGCtl names the variable holding the command that runs pg_ctl as
	// the cluster's user, split on spaces.
	EnvPGCtl = "UNDERSTUDY_TEST_PGCTL"
)

// exclusive is set while this process holds the exclusive lock, so that its
// own URL calls do not wait for it; shared counts the shared locks it holds,
// which would deadlock an exclusive one.
var (
	exclusive atomic.Bool
	shared    atomic.Int64
)

// lockCluster takes the lock file beside the data directory, shared or
// exclusive, for the rest of tb; without a data directory there is nothing
// that could stop the server, and no lock.
func lockCluster(tb testing.TB, how int) {
	tb.Helper()
	data := os.Getenv(EnvPGData)
	if data == "" || (how == unix.LOCK_SH && exclusive.Load()) {
		return
	}
	if how == unix.LOCK_EX && shared.Load() > 0 {
		tb.Fatal("pgtest: this process holds databases of the cluster already: call pgtest.Lock before pgtest.URL")
	}
	f, err := os.OpenFile(filepath.Join(filepath.Dir(data), "pgtest.lock"), os.O_RDWR|os.O_CREATE, 0o666)
	if err != nil {
		tb.Fatalf("pgtest: lock: %v", err)
	}
	if err := unix.Flock(int(f.Fd()), how); err != nil {
		f.Close()
		tb.Fatalf("pgtest: lock: %v", err)
	}
	if how == unix.LOCK_EX {
		exclusive.Store(true)
	} else {
		shared.Add(1)
	}
	tb.Cleanup(func() {
		if how == unix.LOCK_EX {
			exclusive.Store(false)
		} else {
			shared.Add(-1)
		}
		f.Close() // releases the lock
	})
}

// pgctl runs pg_ctl on the cluster with args, or skips tb where the script
// did not say how.
func pgctl(tb testing.TB, args ...string) error {
	tb.Helper()
	data, ctl := os.Getenv(EnvPGData), strings.Fields(os.Getenv(EnvPGCtl))
	if data == "" || len(ctl) == 0 {
		tb.Skip(EnvPGData + " and " + EnvPGCtl + " are not set; run the tests through scripts/pg-throwaway.sh to stop and start the server")
	}
	cmd := osexec.Command(ctl[0], append(append(ctl[1:], "-D", data), args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg_ctl %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// Lock declares that this test stops the server: it waits until no test of
// another package uses the cluster and keeps them off until this test
// ends, when it also starts the server again if it is still stopped. Call
// it before URL. Tests that call it must not run in parallel with other
// tests of their package. It skips tb where the script did not export
// EnvPGData and EnvPGCtl.
func Lock(tb testing.TB) {
	tb.Helper()
	Admin(tb)
	if exclusive.Load() {
		return
	}
	_ = pgctl(tb, "status") // skips where pg_ctl is unknown
	lockCluster(tb, unix.LOCK_EX)
	// Registered after the lock's cleanup, so it runs before it.
	tb.Cleanup(func() {
		if pgctl(tb, "status") != nil {
			if err := start(tb); err != nil {
				tb.Errorf("pgtest: restarting the server after the test: %v", err)
			}
		}
	})
}

// Stop stops the PostgreSQL server (fast: open connections are closed).
// The test must hold Lock.
func Stop(tb testing.TB) {
	tb.Helper()
	if !exclusive.Load() {
		tb.Fatal("pgtest: Stop without Lock")
	}
	if err := pgctl(tb, "-m", "fast", "-w", "-t", "60", "stop"); err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
}

// Start starts the server that Stop stopped and waits until it accepts
// connections.
func Start(tb testing.TB) {
	tb.Helper()
	if err := start(tb); err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
}

func start(tb testing.TB) error {
	tb.Helper()
	// The log the script started the server with, beside the data.
	log := filepath.Join(filepath.Dir(os.Getenv(EnvPGData)), "log")
	return pgctl(tb, "-w", "-t", "60", "-l", log, "start")
}
