package main

import "testing"

// Ensure every form of PostgreSQL connection string opens PostgreSQL, and
// only file paths open SQLite: a connection string taken for a path would
// create a file named after it, password included.
func TestIsPostgresURL(t *testing.T) {
	for _, tt := range []struct {
		db   string
		want bool
	}{
		{"postgres://u:p@db:5432/understudy", true},
		{"postgresql://db/understudy", true},
		{"POSTGRES://u:p@db/understudy", true},
		{"host=127.0.0.1 port=5432 user=u password=p dbname=understudy", true},
		{"dbname=understudy", true},
		{"understudy.db", false},
		{"/var/lib/understudy/understudy.db", false},
		{"data/my=odd name.db", false},
	} {
		if got := isPostgresURL(tt.db); got != tt.want {
			t.Errorf("isPostgresURL(%q) = %v, want %v", tt.db, got, tt.want)
		}
	}
}
