package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"

	"github.com/mattn/go-sqlite3"
)

// This file runs the chunk inserts on go-sqlite3's own statement, below
// database/sql. Through database/sql every chunk's arguments (416 for 32
// predictions) were checked one by one and copied into a fresh
// []driver.NamedValue: 16 KB per chunk, 570 bytes per prediction, a tenth
// of all the bytes a request allocates on the demo model, and 0.3 µs of
// the writer's CPU per row (docs/perf/request-cost.md). The arguments the
// writer builds are driver values already (see predArgs), so nothing needs
// converting.

// rawStmt is one statement prepared on the write connection's driver
// connection, and the argument buffer it reuses. Only one goroutine uses it
// at a time: the writer, or the thread it hands a commit to and waits for.
type rawStmt struct {
	sql  string
	conn *sqlite3.SQLiteConn // the connection st was prepared on
	st   driver.Stmt
	nv   []driver.NamedValue
}

// query runs the statement with args on conn, inside whatever transaction
// conn has open, and discards its (empty) result. A Query rather than an
// Exec: go-sqlite3 binds all of a Query's parameters and steps it in one
// cgo call.
func (r *rawStmt) query(conn *sql.Conn, args []any) error {
	return conn.Raw(func(dc any) error {
		c, ok := dc.(*sqlite3.SQLiteConn)
		if !ok {
			return fmt.Errorf("sqlite: unexpected driver connection %T", dc)
		}
		if r.conn != c {
			// database/sql replaced the connection, which it does only
			// after the driver reported it broken. The old statement
			// belonged to the old connection.
			r.close()
			st, err := c.Prepare(r.sql)
			if err != nil {
				return fmt.Errorf("prepare: %w", err)
			}
			r.conn, r.st = c, st
		}
		nv := r.nv[:0]
		for i, a := range args {
			nv = append(nv, driver.NamedValue{Ordinal: i + 1, Value: a})
		}
		r.nv = nv
		// The rows' bytes are the writer's buffers: let them go.
		defer clear(nv)
		rows, err := r.st.(driver.StmtQueryContext).QueryContext(context.Background(), nv)
		if err != nil {
			return err
		}
		return rows.Close()
	})
}

func (r *rawStmt) close() error {
	if r.st == nil {
		return nil
	}
	err := r.st.Close()
	r.conn, r.st = nil, nil
	return err
}
