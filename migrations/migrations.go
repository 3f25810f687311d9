// Package migrations holds the SQLite schema as goose migrations. It exists
// because go:embed cannot reach a parent directory of the package using it.
package migrations

import "embed"

// FS holds the numbered goose SQL migrations.
//
//go:embed *.sql
var FS embed.FS
