package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/understudy-ml/understudy/pkg/store"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// SaveDeployment replaces the persisted deployment state.
func (db *DB) SaveDeployment(ctx context.Context, d understudy.Deployment) error {
	state, err := json.Marshal(d)
	if err != nil {
		return err
	}
	_, err = db.write.ExecContext(ctx, `INSERT INTO deployment (id, state, updated_us) VALUES (1, ?, ?)
		ON CONFLICT (id) DO UPDATE SET state = excluded.state, updated_us = excluded.updated_us`,
		string(state), db.opts.Now().UnixMicro())
	if err != nil {
		return fmt.Errorf("save deployment: %w", err)
	}
	return nil
}

// LoadDeployment returns the persisted deployment, or nil if none was saved.
func (db *DB) LoadDeployment(ctx context.Context) (*understudy.Deployment, error) {
	var state string
	err := db.read.QueryRowContext(ctx, `SELECT state FROM deployment WHERE id = 1`).Scan(&state)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("load deployment: %w", err)
	}
	var d understudy.Deployment
	if err := json.Unmarshal([]byte(state), &d); err != nil {
		return nil, fmt.Errorf("load deployment: %w", err)
	}
	return &d, nil
}

// RecordEvent stores one lifecycle event, as this replica's unless the
// event names another.
func (db *DB) RecordEvent(ctx context.Context, ev understudy.Event) error {
	if ev.Replica == "" {
		ev.Replica = db.opts.Replica
	}
	_, err := db.write.ExecContext(ctx, `INSERT INTO events (time_us, kind, model, version, actor, detail, replica) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		ev.Time.UnixMicro(), ev.Kind, ev.Model, nullString(ev.Version), ev.Actor, nullString(ev.Detail), ev.Replica)
	if err != nil {
		return fmt.Errorf("record event: %w", err)
	}
	return nil
}

// Events implements store.Reader.
func (db *DB) Events(ctx context.Context, f store.EventFilter) ([]understudy.Event, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	rows, err := db.read.QueryContext(ctx, `SELECT id, time_us, kind, model, COALESCE(version, ''), actor, COALESCE(detail, ''), replica
		FROM events WHERE (? = '' OR model = ?) AND time_us >= ? ORDER BY time_us DESC, id DESC LIMIT ?`,
		f.Model, f.Model, f.Since.UnixMicro(), f.Limit)
	if err != nil {
		return nil, fmt.Errorf("read events: %w", err)
	}
	defer rows.Close()
	out := []understudy.Event{}
	for rows.Next() {
		var ev understudy.Event
		var us int64
		if err := rows.Scan(&ev.ID, &us, &ev.Kind, &ev.Model, &ev.Version, &ev.Actor, &ev.Detail, &ev.Replica); err != nil {
			return nil, fmt.Errorf("read events: %w", err)
		}
		ev.Time = time.UnixMicro(us)
		out = append(out, ev)
	}
	return out, rows.Err()
}

func nullString(s string) sql.NullString {
	return sql.NullString{String: s, Valid: s != ""}
}
