package sqlite

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/mattn/go-sqlite3"
)

// Ensure a raw statement runs inside the transaction open on its
// connection, follows a change of connection by preparing itself again,
// and keeps no reference to the rows' values between runs.
func TestRawStmt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "raw.db")
	pool := sql.OpenDB(connector{drv: &sqlite3.SQLiteDriver{}, dsn: dsn(path, false)})
	defer pool.Close()
	if _, err := pool.Exec("CREATE TABLE t (k TEXT PRIMARY KEY, v BLOB)"); err != nil {
		t.Fatal(err)
	}
	r := &rawStmt{sql: "INSERT INTO t (k, v) VALUES (?, ?), (?, ?)"}
	defer r.close()
	ctx := context.Background()
	c1, err := pool.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := pool.Conn(ctx) // a second connection while c1 is held
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()

	// Rolled back with the transaction it ran in.
	tx, err := c1.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.query(c1, []any{"a", []byte("1"), "b", []byte("2")}); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	for i, nv := range r.nv {
		if nv.Value != nil {
			t.Errorf("argument %d still held after the run: %v", i+1, nv.Value)
		}
	}
	first := r.conn

	// Committed with it; then on the other connection.
	tx, err = c1.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.query(c1, []any{"a", []byte("1"), "b", nil}); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	c1.Close()
	if err := r.query(c2, []any{"c", []byte("3"), "d", int64(4)}); err != nil {
		t.Fatal(err)
	}
	if r.conn == first {
		t.Error("the statement was not prepared again on the second connection")
	}
	// A duplicate key is SQLite's error, as through database/sql.
	if err := r.query(c2, []any{"a", nil, "e", nil}); !rowError(err) {
		t.Errorf("duplicate key: error %v, want a constraint error", err)
	}

	var n int
	var keys string
	if err := pool.QueryRow("SELECT COUNT(*), group_concat(k, '') FROM (SELECT k FROM t ORDER BY k)").Scan(&n, &keys); err != nil {
		t.Fatal(err)
	}
	if n != 4 || keys != "abcd" {
		t.Errorf("table holds %d rows %q, want 4 rows abcd (the rolled-back pair and the refused one absent)", n, keys)
	}
}
