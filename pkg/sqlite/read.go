package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

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
	tx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("set labels: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	sel, err := tx.PrepareContext(ctx, `SELECT label FROM predictions WHERE request_id = ?`)
	if err != nil {
		return nil, fmt.Errorf("set labels: %w", err)
	}
	upd, err := tx.PrepareContext(ctx, `UPDATE predictions SET label = ?, label_time_us = ? WHERE request_id = ?`)
	if err != nil {
		return nil, fmt.Errorf("set labels: %w", err)
	}
	now := db.opts.Now().UnixMicro()
	var unknown []string
	nUnknown := 0
	for _, l := range labels {
		var prev sql.NullFloat64
		if err := sel.QueryRowContext(ctx, l.ID).Scan(&prev); errors.Is(err, sql.ErrNoRows) {
			if nUnknown++; len(unknown) < 5 {
				unknown = append(unknown, fmt.Sprintf("%q", l.ID))
			}
			continue
		} else if err != nil {
			return nil, fmt.Errorf("set labels: %w", err)
		}
		if nUnknown > 0 || (prev.Valid && prev.Float64 == l.Value) {
			continue
		}
		if _, err := upd.ExecContext(ctx, l.Value, now, l.ID); err != nil {
			return nil, fmt.Errorf("set labels: %w", err)
		}
		if prev.Valid {
			p := prev.Float64
			replaced = append(replaced, understudy.Label{ID: l.ID, Value: l.Value, Previous: &p})
		}
	}
	if nUnknown > 0 {
		more := ""
		if nUnknown > len(unknown) {
			more = fmt.Sprintf(" and %d more", nUnknown-len(unknown))
		}
		return nil, understudy.Errorf(understudy.ENOTFOUND, "no prediction with request id %s%s; no label was stored", strings.Join(unknown, ", "), more)
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("set labels: %w", err)
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
	now := db.opts.Now().UnixMicro()
	_, err = db.write.ExecContext(ctx, `INSERT INTO models (name, version, sha256, file, size, signature, metadata, first_seen_us, last_seen_us, memory_bytes)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (name, version) DO UPDATE SET sha256 = excluded.sha256, file = excluded.file, size = excluded.size,
			signature = coalesce(excluded.signature, signature), metadata = coalesce(excluded.metadata, metadata),
			last_seen_us = excluded.last_seen_us, memory_bytes = coalesce(excluded.memory_bytes, memory_bytes)`,
		m.Name, m.Version, m.SHA256, m.File, m.Size, sig, meta, now, now, sql.NullInt64{Int64: m.MemoryBytes, Valid: m.MemoryBytes > 0})
	if err != nil {
		return fmt.Errorf("record model %q version %s: %w", m.Name, m.Version, err)
	}
	return nil
}

func jsonOrNull[T any](v *T) (sql.NullString, error) {
	if v == nil {
		return sql.NullString{}, nil
	}
	b, err := json.Marshal(v)
	return sql.NullString{String: string(b), Valid: err == nil}, err
}

// PredictionRecord is a stored prediction. Inputs is nil when they were
// larger than the input cap; their hash and size are always kept.
type PredictionRecord struct {
	understudy.Prediction
	InputsSHA256 string
	InputsSize   int
	Label        *float64
	LabelTime    time.Time // zero when unlabelled
}

// Prediction returns the stored prediction of a request, or ENOTFOUND.
func (db *DB) Prediction(ctx context.Context, requestID string) (*PredictionRecord, error) {
	var (
		r                 PredictionRecord
		timeUS, latencyUS int64
		inputs, outputs   []byte
		errText           sql.NullString
		label             sql.NullFloat64
		labelTimeUS       sql.NullInt64
	)
	err := db.read.QueryRowContext(ctx, `SELECT request_id, time_us, model, version, inputs, inputs_sha256, inputs_size, outputs,
			latency_us, status, error, label, label_time_us
		FROM predictions WHERE request_id = ?`, requestID).
		Scan(&r.ID, &timeUS, &r.Model, &r.Version, &inputs, &r.InputsSHA256, &r.InputsSize, &outputs,
			&latencyUS, &r.Status, &errText, &label, &labelTimeUS)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, understudy.Errorf(understudy.ENOTFOUND, "no prediction with request id %q", requestID)
	} else if err != nil {
		return nil, fmt.Errorf("read prediction %q: %w", requestID, err)
	}
	r.Time = time.UnixMicro(timeUS)
	r.Latency = time.Duration(latencyUS) * time.Microsecond
	r.Error = errText.String
	if label.Valid {
		r.Label = &label.Float64
	}
	if labelTimeUS.Valid {
		r.LabelTime = time.UnixMicro(labelTimeUS.Int64)
	}
	if inputs != nil {
		if _, r.InputsSHA256, r.InputsSize, err = store.StoredInputs(inputs, r.InputsSHA256, r.InputsSize); err != nil {
			return nil, fmt.Errorf("read prediction %q inputs: %w", requestID, err)
		}
		if r.Inputs, err = store.DecodeTensors(inputs); err != nil {
			return nil, fmt.Errorf("read prediction %q inputs: %w", requestID, err)
		}
	}
	if outputs != nil {
		if r.Outputs, err = store.DecodeTensors(outputs); err != nil {
			return nil, fmt.Errorf("read prediction %q outputs: %w", requestID, err)
		}
	}
	return &r, nil
}

// ShadowResults returns the stored shadow results of a request, ordered by
// shadow and version; none is not an error.
func (db *DB) ShadowResults(ctx context.Context, requestID string) ([]*understudy.ShadowResult, error) {
	rows, err := db.read.QueryContext(ctx, `SELECT request_id, time_us, shadow, version, primary_model, primary_version, outputs,
			latency_us, status, error, comparison, origin
		FROM shadow_results WHERE request_id = ? ORDER BY shadow, version`, requestID)
	if err != nil {
		return nil, fmt.Errorf("read shadow results %q: %w", requestID, err)
	}
	defer rows.Close()
	var out []*understudy.ShadowResult
	for rows.Next() {
		var (
			s                 understudy.ShadowResult
			timeUS, latencyUS int64
			outputs, cmp      []byte
			errText           sql.NullString
		)
		if err := rows.Scan(&s.RequestID, &timeUS, &s.Shadow, &s.Version, &s.Primary, &s.PrimaryVersion, &outputs,
			&latencyUS, &s.Status, &errText, &cmp, &s.Origin); err != nil {
			return nil, fmt.Errorf("read shadow results %q: %w", requestID, err)
		}
		s.Time = time.UnixMicro(timeUS)
		s.Latency = time.Duration(latencyUS) * time.Microsecond
		s.Error = errText.String
		if outputs != nil {
			if s.Outputs, err = store.DecodeTensors(outputs); err != nil {
				return nil, fmt.Errorf("read shadow result %q of %s: %w", requestID, s.Shadow, err)
			}
		}
		if len(cmp) > 0 {
			if err := json.Unmarshal(cmp, &s.Compare); err != nil {
				return nil, fmt.Errorf("read shadow result %q of %s comparison: %w", requestID, s.Shadow, err)
			}
		}
		out = append(out, &s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read shadow results %q: %w", requestID, err)
	}
	return out, nil
}

// Counts returns the number of stored predictions and shadow results.
func (db *DB) Counts(ctx context.Context) (predictions, shadowResults int64, err error) {
	err = db.read.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM predictions), (SELECT count(*) FROM shadow_results)`).
		Scan(&predictions, &shadowResults)
	if err != nil {
		return 0, 0, fmt.Errorf("count rows: %w", err)
	}
	return predictions, shadowResults, nil
}

// Skips returns the sampled-out and dropped jobs of a shadow, over all its
// versions and all stored minutes.
func (db *DB) Skips(ctx context.Context, shadow string) (sampledOut, dropped int64, err error) {
	err = db.read.QueryRowContext(ctx, `SELECT coalesce(sum(sampled_out), 0), coalesce(sum(dropped), 0) FROM shadow_skips WHERE shadow = ?`, shadow).
		Scan(&sampledOut, &dropped)
	if err != nil {
		return 0, 0, fmt.Errorf("read skips of %q: %w", shadow, err)
	}
	return sampledOut, dropped, nil
}

// Models implements store.Reader.
func (db *DB) Models(ctx context.Context) ([]store.ModelRecord, error) {
	rows, err := db.read.QueryContext(ctx, `SELECT name, version, sha256, file, size, signature, metadata, first_seen_us, last_seen_us,
			coalesce(memory_bytes, 0)
		FROM models ORDER BY name, first_seen_us, version`)
	if err != nil {
		return nil, fmt.Errorf("read models: %w", err)
	}
	defer rows.Close()
	var out []store.ModelRecord
	for rows.Next() {
		var (
			m           store.ModelRecord
			sig, meta   []byte
			first, last int64
		)
		if err := rows.Scan(&m.Name, &m.Version, &m.SHA256, &m.File, &m.Size, &sig, &meta, &first, &last, &m.MemoryBytes); err != nil {
			return nil, fmt.Errorf("read models: %w", err)
		}
		m.FirstSeen, m.LastSeen = time.UnixMicro(first), time.UnixMicro(last)
		if sig != nil {
			m.Signature = new(understudy.Signature)
			if err := json.Unmarshal(sig, m.Signature); err != nil {
				return nil, fmt.Errorf("read model %q signature: %w", m.Name, err)
			}
		}
		if meta != nil {
			m.Metadata = new(understudy.Metadata)
			if err := json.Unmarshal(meta, m.Metadata); err != nil {
				return nil, fmt.Errorf("read model %q metadata: %w", m.Name, err)
			}
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read models: %w", err)
	}
	return out, nil
}
