// Package migrations holds the schemas as goose migrations: SQLite's in this
// directory, PostgreSQL's in postgres/. It exists because go:embed cannot
// reach a parent directory of the package using it.
package migrations

import "embed"

// FS holds the numbered goose SQL migrations of the SQLite schema. The
// pattern matches this directory's files only, never postgres/.
//
//go:embed *.sql
var FS embed.FS

// Postgres holds the numbered goose SQL migrations of the PostgreSQL schema,
// under the directory postgres.
//
//go:embed postgres/*.sql
var Postgres embed.FS
