package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/understudy-ml/understudy/pkg/postgres"
	"github.com/understudy-ml/understudy/pkg/report"
	"github.com/understudy-ml/understudy/pkg/sqlite"
	"github.com/understudy-ml/understudy/pkg/store"
)

// This file opens the store --db names and says who this replica is in it.

// replicaID is --replica-id, or hostname:port of --addr. A port of 0 is
// chosen by the kernel at listen time, after the store is open, so the
// process id stands in for it.
func replicaID(c *Config) string {
	if c.ReplicaID != "" {
		return c.ReplicaID
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	_, port, err := net.SplitHostPort(c.Addr)
	if err != nil || port == "0" || port == "" {
		return fmt.Sprintf("%s:pid%d", host, os.Getpid())
	}
	return host + ":" + port
}

// openStore opens the backend --db names: a SQLite file, or a PostgreSQL
// server several replicas share.
func (m *Main) openStore(ctx context.Context) error {
	c := &m.Config
	replica := replicaID(c)
	if isPostgresURL(c.DB) {
		po := postgres.Options{
			InputCap:      int(c.InputCap),
			FlushInterval: c.FlushInterval,
			RetainDays:    c.RetainDays,
			RetainRows:    c.RetainRows,
			Replica:       replica,
			OnCommit:      m.metrics.StoreCommit,
			Log:           m.Log.With().Str("component", "store").Logger(),
			// A non-positive bound would mean the default to the store;
			// the flags are checked positive.
			MaxBufferedRows:  c.StoreBufferRows,
			MaxBufferedBytes: int64(c.StoreBufferBytes),
		}
		db, err := postgres.Open(ctx, c.DB, po)
		if err != nil {
			// Open's errors name the URL without its password.
			return err
		}
		m.store = db
		m.Log.Info().Str("replica", replica).Msg("store opened: PostgreSQL, shared by the replicas that use it")
		return nil
	}
	so := sqlite.Options{
		InputCap:      int(c.InputCap),
		ShadowNice:    c.ShadowNice,
		ShadowIdle:    c.ShadowSched == "idle",
		FlushInterval: c.FlushInterval,
		RetainDays:    c.RetainDays,
		RetainRows:    c.RetainRows,
		Replica:       replica,
		OnCommit:      m.metrics.StoreCommit,
		Log:           m.Log.With().Str("component", "store").Logger(),
	}
	if m.StoreOptions != nil {
		m.StoreOptions(&so)
	}
	db, err := sqlite.Open(c.DB, so)
	if err != nil {
		return fmt.Errorf("open database %s: %w", c.DB, err)
	}
	m.store, m.threadStats = db, db.ThreadStats
	m.storeThread = so.ShadowIdle || so.ShadowNice > 0
	m.Log.Info().Str("db", c.DB).Str("replica", replica).Msg("store opened")
	return nil
}

// storeHealth reports this replica's store for the report.
func (m *Main) storeHealth() *report.StoreHealth {
	st := m.store.Stats()
	h := &report.StoreHealth{Replica: replicaID(&m.Config), Lost: st.Predictions.Lost + st.ShadowResults.Lost + st.Skips.Lost}
	if sh, ok := m.store.(storeHealth); ok {
		h.Degraded = sh.Degraded()
	}
	return h
}

// isPostgresURL tells PostgreSQL connection strings from a SQLite file
// path: a URL whose scheme is postgres or postgresql, in any case, or a
// key=value string such as "host=db user=u dbname=understudy". Taking one
// for a file would create a file named after it, password included.
func isPostgresURL(db string) bool {
	lower := strings.ToLower(db)
	if strings.HasPrefix(lower, "postgres://") || strings.HasPrefix(lower, "postgresql://") {
		return true
	}
	for _, f := range strings.Fields(db) {
		if k, _, ok := strings.Cut(f, "="); ok && (k == "host" || k == "dbname" || k == "user" || k == "password" || k == "port") {
			return true
		}
	}
	return false
}

// storeHealth is what a remote store says about itself while it cannot
// write: the server still serves, and /readyz says why it is degraded.
type storeHealth interface {
	Degraded() string
}

var _ store.Store = (*sqlite.DB)(nil)
