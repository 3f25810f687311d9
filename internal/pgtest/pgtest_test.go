package pgtest

import (
	"context"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestLookup(t *testing.T) {
	const good = "postgres://postgres@127.0.0.1:5432/understudy?sslmode=disable"
	cases := []struct {
		name    string
		env     map[string]string
		wantURL string
		wantOK  bool
		wantErr bool
	}{
		{"unset skips", map[string]string{}, "", false, false},
		{"unset and required fails", map[string]string{EnvRequire: "1"}, "", false, true},
		{"unset and require empty skips", map[string]string{EnvRequire: ""}, "", false, false},
		{"unset and require not 1 skips", map[string]string{EnvRequire: "0"}, "", false, false},
		{"set", map[string]string{EnvURL: good}, good, true, false},
		{"set and required", map[string]string{EnvURL: good, EnvRequire: "1"}, good, true, false},
		{"postgresql scheme", map[string]string{EnvURL: "postgresql://u@h/db"}, "postgresql://u@h/db", true, false},
		{"not a postgres URL fails", map[string]string{EnvURL: "host=127.0.0.1 dbname=x"}, "", false, true},
		{"unparsable fails", map[string]string{EnvURL: "postgres://[::1"}, "", false, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			u, ok, err := lookup(func(k string) string { return c.env[k] })
			if u != c.wantURL || ok != c.wantOK || (err != nil) != c.wantErr {
				t.Fatalf("lookup = %q, %v, %v; want %q, %v, error %v", u, ok, err, c.wantURL, c.wantOK, c.wantErr)
			}
			if !ok && !c.wantErr && err == nil {
				return // the skip case: its message is unsetMsg
			}
			if err != nil && c.env[EnvURL] == "" && !strings.Contains(err.Error(), "scripts/pg-throwaway.sh") {
				t.Errorf("error %q does not say how to get a server", err)
			}
		})
	}
}

var validName = regexp.MustCompile(`^t(_[a-z0-9]+(_[a-z0-9]+)*)?_[0-9a-f]{12}$`)

func TestDBName(t *testing.T) {
	for _, test := range []string{
		"TestX",
		"TestStore/insert_and_read",
		"Test Ünïcode/with spaces/and-dashes",
		"___",
		"",
		strings.Repeat("TestVeryLongName/", 20),
	} {
		a, err := dbName(test)
		if err != nil {
			t.Fatal(err)
		}
		b, err := dbName(test)
		if err != nil {
			t.Fatal(err)
		}
		if len(a) > maxIdent || !validName.MatchString(a) {
			t.Errorf("dbName(%q) = %q (%d bytes): want t_<a-z0-9_>_<12 hex>, at most %d bytes", test, a, len(a), maxIdent)
		}
		if a == b {
			t.Errorf("dbName(%q) gave %q twice", test, a)
		}
	}
	if got, _ := dbName("TestStore/insert_and_read"); !strings.HasPrefix(got, "t_teststore_insert_and_read_") {
		t.Errorf("dbName kept too little of the test's name: %q", got)
	}
}

// Each test gets its own empty, writable database, dropped when it ends.
func TestURLGivesEachTestItsOwnDatabase(t *testing.T) {
	admin := Admin(t)
	ctx := context.Background()
	var names []string
	var conns []*pgx.Conn
	defer func() {
		for _, c := range conns {
			_ = c.Close(ctx) // the drop has ended their sessions already
		}
	}()
	for _, sub := range []string{"first", "second"} {
		t.Run(sub, func(t *testing.T) {
			u := URL(t)
			p, err := url.Parse(u)
			if err != nil {
				t.Fatal(err)
			}
			want := strings.TrimPrefix(p.Path, "/")
			conn, err := pgx.Connect(ctx, u)
			if err != nil {
				t.Fatal(err)
			}
			// Left open past the subtest on purpose: the drop in URL's cleanup
			// must end the session (WITH (FORCE)) rather than fail on it.
			conns = append(conns, conn)

			var db string
			if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil {
				t.Fatal(err)
			}
			if db != want {
				t.Fatalf("connected to %q, want %q from the URL", db, want)
			}
			names = append(names, db)

			var tables int
			if err := conn.QueryRow(ctx,
				"SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')",
			).Scan(&tables); err != nil {
				t.Fatal(err)
			}
			if tables != 0 {
				t.Fatalf("new database %s has %d relations, want none", db, tables)
			}

			if _, err := conn.Exec(ctx, "CREATE TABLE kv (k text PRIMARY KEY, v text NOT NULL)"); err != nil {
				t.Fatal(err)
			}
			if _, err := conn.Exec(ctx, "INSERT INTO kv VALUES ($1, $2)", "db", db); err != nil {
				t.Fatal(err)
			}
			var v string
			if err := conn.QueryRow(ctx, "SELECT v FROM kv WHERE k = 'db'").Scan(&v); err != nil {
				t.Fatal(err)
			}
			if v != db {
				t.Fatalf("read back %q, want %q", v, db)
			}
		})
	}
	if t.Failed() {
		return
	}
	if len(names) != 2 || names[0] == names[1] {
		t.Fatalf("the subtests' databases are %q, want two different ones", names)
	}

	// The subtests have ended, so their cleanups have dropped both databases.
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var left int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_database WHERE datname = ANY($1)", names).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Fatalf("%d of the databases %q are still there after their tests ended", left, names)
	}
}
