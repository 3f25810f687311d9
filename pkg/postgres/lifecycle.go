package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/understudy-ml/understudy/pkg/store"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// SetLabels attaches ground truth to stored predictions. It first flushes the
// queue, because a label may arrive right after its prediction. If any id is
// unknown it fails with ENOTFOUND naming them and changes nothing. It returns
// the labels that replaced a different earlier one, with Previous set; a
// label equal to the stored one changes nothing.
func (db *DB) SetLabels(ctx context.Context, labels []understudy.Label) (replaced []understudy.Label, err error) {
	if len(labels) == 0 {
		return nil, nil
	}
	if err := db.Flush(ctx); err != nil {
		return nil, err
	}
	ids := make([]string, len(labels))
	for i, l := range labels {
		ids[i] = text(l.ID)
	}
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		return nil, db.errorf("set labels: %w", err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	// Locked, so that labels set at once by two replicas replace one
	// another in turn rather than both reporting the same previous label.
	rows, err := tx.Query(ctx, `SELECT request_id, label FROM predictions WHERE request_id = ANY($1) ORDER BY request_id FOR UPDATE`, ids)
	if err != nil {
		return nil, db.errorf("set labels: %w", err)
	}
	type stored struct{ label *float64 }
	cur := map[string]*stored{}
	var (
		id  string
		lbl *float64
	)
	if _, err := pgx.ForEachRow(rows, []any{&id, &lbl}, func() error {
		cur[id] = &stored{lbl}
		lbl = nil
		return nil
	}); err != nil {
		return nil, db.errorf("set labels: %w", err)
	}
	var unknown []string
	nUnknown := 0
	for _, l := range labels {
		if cur[text(l.ID)] == nil {
			if nUnknown++; len(unknown) < 5 {
				unknown = append(unknown, fmt.Sprintf("%q", l.ID))
			}
		}
	}
	if nUnknown > 0 {
		more := ""
		if nUnknown > len(unknown) {
			more = fmt.Sprintf(" and %d more", nUnknown-len(unknown))
		}
		return nil, understudy.Errorf(understudy.ENOTFOUND, "no prediction with request id %s%s; no label was stored", strings.Join(unknown, ", "), more)
	}
	// In the order given, as if set one by one: a later label of the same
	// id replaces an earlier one.
	final := map[string]float64{}
	for _, l := range labels {
		s := cur[text(l.ID)]
		if s.label != nil && *s.label == l.Value {
			continue
		}
		if s.label != nil {
			p := *s.label
			replaced = append(replaced, understudy.Label{ID: l.ID, Value: l.Value, Previous: &p})
		}
		v := l.Value
		s.label = &v
		final[text(l.ID)] = v
	}
	if len(final) > 0 {
		uid, uv := make([]string, 0, len(final)), make([]float64, 0, len(final))
		for id, v := range final {
			uid, uv = append(uid, id), append(uv, v)
		}
		if _, err := tx.Exec(ctx, `UPDATE predictions p SET label = u.v, label_time_us = $3
			FROM unnest($1::text[], $2::float8[]) AS u(id, v) WHERE p.request_id = u.id`, uid, uv, db.opts.Now().UnixMicro()); err != nil {
			return nil, db.errorf("set labels: %w", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, db.errorf("set labels: %w", err)
	}
	return replaced, nil
}

// RecordModel upserts a model version: the first call sets first_seen, every
// call sets last_seen and the file's details. A zero MemoryBytes keeps the
// stored one, since the memory is measured only when the model loads.
func (db *DB) RecordModel(ctx context.Context, m understudy.ModelInfo) error {
	if m.Name == "" || m.Version == "" {
		return understudy.Errorf(understudy.EINVALID, "model %q: a model needs a name and a version to be recorded", m.Name)
	}
	sig, err := jsonOrNull(m.Signature)
	if err != nil {
		return fmt.Errorf("record model %q: %w", m.Name, err)
	}
	meta, err := jsonOrNull(m.Metadata)
	if err != nil {
		return fmt.Errorf("record model %q: %w", m.Name, err)
	}
	var mem *int64
	if m.MemoryBytes > 0 {
		mem = &m.MemoryBytes
	}
	now := db.opts.Now().UnixMicro()
	_, err = db.pool.Exec(ctx, `INSERT INTO models AS t (name, version, sha256, file, size, signature, metadata, first_seen_us, last_seen_us, memory_bytes)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9)
		ON CONFLICT (name, version) DO UPDATE SET sha256 = EXCLUDED.sha256, file = EXCLUDED.file, size = EXCLUDED.size,
			signature = coalesce(EXCLUDED.signature, t.signature), metadata = coalesce(EXCLUDED.metadata, t.metadata),
			last_seen_us = EXCLUDED.last_seen_us, memory_bytes = coalesce(EXCLUDED.memory_bytes, t.memory_bytes)`,
		text(m.Name), text(m.Version), m.SHA256, text(m.File), m.Size, sig, meta, now, mem)
	if err != nil {
		return db.errorf("record model %q version %s: %w", m.Name, m.Version, err)
	}
	return nil
}

func jsonOrNull[T any](v *T) (*string, error) {
	if v == nil {
		return nil, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	s := string(b)
	return &s, nil
}

// Models implements store.Reader.
func (db *DB) Models(ctx context.Context) ([]store.ModelRecord, error) {
	rows, err := db.pool.Query(ctx, `SELECT name, version, sha256, file, size, signature, metadata, first_seen_us, last_seen_us,
			coalesce(memory_bytes, 0)
		FROM models ORDER BY name, first_seen_us, version`)
	if err != nil {
		return nil, db.errorf("read models: %w", err)
	}
	var (
		out         []store.ModelRecord
		m           store.ModelRecord
		sig, meta   []byte
		first, last int64
	)
	_, err = pgx.ForEachRow(rows, []any{&m.Name, &m.Version, &m.SHA256, &m.File, &m.Size, &sig, &meta, &first, &last, &m.MemoryBytes}, func() error {
		r := m
		r.FirstSeen, r.LastSeen = time.UnixMicro(first), time.UnixMicro(last)
		if sig != nil {
			r.Signature = new(understudy.Signature)
			if err := json.Unmarshal(sig, r.Signature); err != nil {
				return fmt.Errorf("model %q signature: %w", r.Name, err)
			}
		}
		if meta != nil {
			r.Metadata = new(understudy.Metadata)
			if err := json.Unmarshal(meta, r.Metadata); err != nil {
				return fmt.Errorf("model %q metadata: %w", r.Name, err)
			}
		}
		out = append(out, r)
		return nil
	})
	if err != nil {
		return nil, db.errorf("read models: %w", err)
	}
	return out, nil
}

// SaveDeployment replaces the persisted deployment state and, in the same
// transaction, notifies the replicas that watch it (WatchDeployment).
// updated_us grows with every save, even two in one microsecond, so that a
// replica polling it sees each one.
func (db *DB) SaveDeployment(ctx context.Context, d understudy.Deployment) error {
	state, err := json.Marshal(d)
	if err != nil {
		return err
	}
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		return db.errorf("save deployment: %w", err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	var updated int64
	err = tx.QueryRow(ctx, `INSERT INTO deployment AS t (id, state, updated_us) VALUES (1, $1, $2)
		ON CONFLICT (id) DO UPDATE SET state = EXCLUDED.state, updated_us = GREATEST(EXCLUDED.updated_us, t.updated_us + 1)
		RETURNING updated_us`, string(state), db.opts.Now().UnixMicro()).Scan(&updated)
	if err != nil {
		return db.errorf("save deployment: %w", err)
	}
	if _, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, db.channel, fmt.Sprint(updated)); err != nil {
		return db.errorf("save deployment: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return db.errorf("save deployment: %w", err)
	}
	return nil
}

// LoadDeployment returns the persisted deployment, or nil if none was saved.
func (db *DB) LoadDeployment(ctx context.Context) (*understudy.Deployment, error) {
	d, _, err := db.loadDeployment(ctx)
	return d, err
}

// loadDeployment returns the deployment and when it was saved.
func (db *DB) loadDeployment(ctx context.Context) (*understudy.Deployment, int64, error) {
	var (
		state   []byte
		updated int64
	)
	err := db.pool.QueryRow(ctx, `SELECT state, updated_us FROM deployment WHERE id = 1`).Scan(&state, &updated)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, 0, nil
	} else if err != nil {
		return nil, 0, db.errorf("load deployment: %w", err)
	}
	var d understudy.Deployment
	if err := json.Unmarshal(state, &d); err != nil {
		return nil, 0, fmt.Errorf("load deployment: %w", err)
	}
	return &d, updated, nil
}

// RecordEvent stores one lifecycle event, stamped with this replica
// unless the event names another.
func (db *DB) RecordEvent(ctx context.Context, ev understudy.Event) error {
	if ev.Replica == "" {
		ev.Replica = db.opts.Replica
	}
	_, err := db.pool.Exec(ctx, `INSERT INTO events (time_us, kind, model, version, actor, detail, replica) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		ev.Time.UnixMicro(), text(ev.Kind), text(ev.Model), nullString(ev.Version), text(ev.Actor), nullString(ev.Detail), text(ev.Replica))
	if err != nil {
		return db.errorf("record event: %w", err)
	}
	return nil
}

// Events implements store.Reader: the events of every replica.
func (db *DB) Events(ctx context.Context, f store.EventFilter) ([]understudy.Event, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	rows, err := db.pool.Query(ctx, `SELECT id, time_us, kind, model, coalesce(version, ''), actor, coalesce(detail, ''), replica
		FROM events WHERE ($1 = '' OR model = $1) AND time_us >= $2 ORDER BY time_us DESC, id DESC LIMIT $3`,
		f.Model, f.Since.UnixMicro(), f.Limit)
	if err != nil {
		return nil, db.errorf("read events: %w", err)
	}
	out := []understudy.Event{}
	var (
		ev understudy.Event
		us int64
	)
	_, err = pgx.ForEachRow(rows, []any{&ev.ID, &us, &ev.Kind, &ev.Model, &ev.Version, &ev.Actor, &ev.Detail, &ev.Replica}, func() error {
		ev.Time = time.UnixMicro(us)
		out = append(out, ev)
		return nil
	})
	if err != nil {
		return nil, db.errorf("read events: %w", err)
	}
	return out, nil
}

func nullString(s string) *string {
	if s == "" {
		return nil
	}
	s = text(s)
	return &s
}
