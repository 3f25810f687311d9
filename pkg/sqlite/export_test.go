package sqlite

import "database/sql"

// WritePool and ReadPool let tests inspect the connections and change
// pragmas such as max_page_count.
func (db *DB) WritePool() *sql.DB { return db.write }
func (db *DB) ReadPool() *sql.DB  { return db.read }
