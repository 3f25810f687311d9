package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/understudy-ml/understudy/pkg/store"
	"github.com/understudy-ml/understudy/pkg/store/rollup"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// disagreeSQL is the condition of PairFilter.DisagreeOnly; it takes the
// tolerance.
const disagreeSQL = `(status <> 'ok' OR agreement < 1 OR (agreement IS NULL AND max_abs_diff > ?))`

// Pairs implements store.Snapshot: store/rollup searches, through the
// two queries below, and the records are read by id.
func (s *snapshot) Pairs(ctx context.Context, f store.PairFilter) ([]store.PairRecord, error) {
	keys, err := rollup.SearchPairs(ctx, s, f)
	if err != nil {
		return nil, fmt.Errorf("read pairs: %w", err)
	}
	return s.pairRecords(ctx, keys)
}

// PairKeys implements rollup.PairSource with one indexed range scan.
func (s *snapshot) PairKeys(ctx context.Context, f store.PairFilter, lo, hi int64, limit int) ([]rollup.PairKey, error) {
	where, args := s.shadowWhere(f.Shadow, f.Version)
	where += "time_us >= ? AND time_us < ?"
	args = append(args, lo, hi)
	if f.DisagreeOnly {
		where += " AND " + disagreeSQL
		args = append(args, f.Tolerance)
	}
	order := "time_us DESC, id DESC"
	if f.Order == store.ByDiff {
		where += " AND max_abs_diff IS NOT NULL"
		order = "max_abs_diff DESC, time_us DESC, id DESC"
	}
	args = append(args, limit)
	rows, err := s.tx.QueryContext(ctx, `SELECT id, time_us, coalesce(max_abs_diff, 0) FROM shadow_results WHERE `+where+` ORDER BY `+order+` LIMIT ?`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []rollup.PairKey
	for rows.Next() {
		var k rollup.PairKey
		if err := rows.Scan(&k.ID, &k.TimeUS, &k.Diff); err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// PairRollups implements rollup.PairSource.
func (s *snapshot) PairRollups(ctx context.Context, f store.PairFilter, span, lo, hi int64, fn func(*rollup.PairRollup) error) error {
	where, args := s.shadowWhere(f.Shadow, f.Version)
	var r rollup.PairRollup
	var maxAbs sql.NullFloat64
	// The histogram is only needed for pairs without a class output.
	return s.each(ctx, `SELECT start, disagree_pairs + errors + timeouts, ok - class_pairs, float_pairs, max_abs,
			CASE WHEN ok > class_pairs THEN diff_hist END
		FROM shadow_rollups WHERE `+where+` span = ? AND start >= ? AND start < ?`, append(args, span, lo, hi),
		func(rows *sql.Rows) error {
			if err := rows.Scan(&r.Start, &r.Disagree, &r.NoClass, &r.FloatPairs, &maxAbs, &r.Diff); err != nil {
				return err
			}
			r.MaxAbs = ptrFloat(maxAbs)
			return fn(&r)
		})
}

// pairRecords reads the pairs of keys, in the order of keys.
func (s *snapshot) pairRecords(ctx context.Context, keys []rollup.PairKey) ([]store.PairRecord, error) {
	pos := make(map[int64]int, len(keys))
	for i, k := range keys {
		pos[k.ID] = i
	}
	recs := make([]store.PairRecord, len(keys))
	for chunk := range slices.Chunk(keys, 500) {
		args := make([]any, len(chunk))
		for i, k := range chunk {
			args[i] = k.ID
		}
		rows, err := s.tx.QueryContext(ctx, `SELECT s.id, s.request_id, s.time_us, s.shadow, s.version, s.primary_model, s.primary_version,
				s.status, coalesce(s.error, ''), s.primary_class, s.shadow_class, s.agreement, s.max_abs_diff,
				s.latency_us, s.primary_latency_us, p.label, coalesce(p.inputs, ''), coalesce(p.outputs, ''), coalesce(s.outputs, ''), s.origin
			FROM shadow_results s LEFT JOIN predictions p ON p.request_id = s.request_id
			WHERE s.id IN (?`+strings.Repeat(", ?", len(chunk)-1)+`)`, args...)
		if err != nil {
			return nil, fmt.Errorf("read pairs: %w", err)
		}
		for rows.Next() {
			var (
				id, timeUS, latencyUS int64
				r                     store.PairRecord
				pc, sc, platency      sql.NullInt64
				agreement, diff, lbl  sql.NullFloat64
			)
			if err := rows.Scan(&id, &r.RequestID, &timeUS, &r.Shadow, &r.Version, &r.PrimaryModel, &r.PrimaryVersion,
				&r.Status, &r.Error, &pc, &sc, &agreement, &diff, &latencyUS, &platency, &lbl,
				&r.Inputs, &r.PrimaryOutputs, &r.ShadowOutputs, &r.Origin); err != nil {
				rows.Close()
				return nil, fmt.Errorf("read pairs: %w", err)
			}
			if err := tensorsJSON(&r.Inputs, &r.PrimaryOutputs, &r.ShadowOutputs); err != nil {
				rows.Close()
				return nil, fmt.Errorf("read pairs: request %q: %w", r.RequestID, err)
			}
			r.Time = time.UnixMicro(timeUS)
			r.Latency = time.Duration(latencyUS) * time.Microsecond
			r.PrimaryClass, r.ShadowClass = ptrInt(pc), ptrInt(sc)
			r.Agreement, r.MaxAbsDiff, r.Label = ptrFloat(agreement), ptrFloat(diff), ptrFloat(lbl)
			if platency.Valid {
				d := time.Duration(platency.Int64) * time.Microsecond
				r.PrimaryLatency = &d
			}
			recs[pos[id]] = r
		}
		if err := rows.Err(); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read pairs: %w", err)
		}
		rows.Close()
	}
	// Both reads are in one snapshot, so every key has its record.
	return recs, nil
}

func ptrInt(n sql.NullInt64) *int64 {
	if !n.Valid {
		return nil
	}
	return &n.Int64
}

func ptrFloat(f sql.NullFloat64) *float64 {
	if !f.Valid {
		return nil
	}
	return &f.Float64
}

// Request implements store.Snapshot.
func (s *snapshot) Request(ctx context.Context, requestID string) (*store.StoredRequest, error) {
	var out store.StoredRequest
	var (
		p                      store.StoredPrediction
		timeUS, latencyUS      int64
		cpuUS, labelTimeUS     sql.NullInt64
		label                  sql.NullFloat64
		inputs, outputs, errTx sql.NullString
	)
	err := s.tx.QueryRowContext(ctx, `SELECT request_id, time_us, model, version, inputs, inputs_sha256, inputs_size, outputs,
			latency_us, cpu_us, status, error, label, label_time_us
		FROM predictions WHERE request_id = ?`, requestID).
		Scan(&p.RequestID, &timeUS, &p.Model, &p.Version, &inputs, &p.InputsSHA256, &p.InputsSize, &outputs,
			&latencyUS, &cpuUS, &p.Status, &errTx, &label, &labelTimeUS)
	switch {
	case err == nil:
		p.Time = time.UnixMicro(timeUS)
		p.Inputs, p.Outputs, p.Error = inputs.String, outputs.String, errTx.String
		if err := storedInputs(&p.Inputs, inputs.Valid, &p.InputsSHA256, &p.InputsSize); err != nil {
			return nil, fmt.Errorf("read request %q inputs: %w", requestID, err)
		}
		if err := tensorsJSON(&p.Outputs); err != nil {
			return nil, fmt.Errorf("read request %q outputs: %w", requestID, err)
		}
		p.Latency = time.Duration(latencyUS) * time.Microsecond
		p.CPU = time.Duration(cpuUS.Int64) * time.Microsecond
		p.Label = ptrFloat(label)
		if labelTimeUS.Valid {
			p.LabelTime = time.UnixMicro(labelTimeUS.Int64)
		}
		out.Prediction = &p
	case !errors.Is(err, sql.ErrNoRows):
		return nil, fmt.Errorf("read request %q: %w", requestID, err)
	}
	origin, oargs := s.andOrigin("")
	rows, err := s.tx.QueryContext(ctx, `SELECT time_us, shadow, version, primary_model, primary_version, coalesce(outputs, ''),
			latency_us, primary_latency_us, cpu_us, status, coalesce(error, ''), comparison, origin
		FROM shadow_results WHERE request_id = ?`+origin+` ORDER BY shadow, version`, append([]any{requestID}, oargs...)...)
	if err != nil {
		return nil, fmt.Errorf("read request %q: %w", requestID, err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			r                 store.StoredShadowResult
			timeUS, latencyUS int64
			platency, cpu     sql.NullInt64
			cmp               []byte
		)
		if err := rows.Scan(&timeUS, &r.Shadow, &r.Version, &r.PrimaryModel, &r.PrimaryVersion, &r.Outputs,
			&latencyUS, &platency, &cpu, &r.Status, &r.Error, &cmp, &r.Origin); err != nil {
			return nil, fmt.Errorf("read request %q: %w", requestID, err)
		}
		r.Time = time.UnixMicro(timeUS)
		r.Latency = time.Duration(latencyUS) * time.Microsecond
		if err := tensorsJSON(&r.Outputs); err != nil {
			return nil, fmt.Errorf("read request %q of %s outputs: %w", requestID, r.Shadow, err)
		}
		if platency.Valid {
			d := time.Duration(platency.Int64) * time.Microsecond
			r.PrimaryLatency = &d
		}
		r.CPU = time.Duration(cpu.Int64) * time.Microsecond
		if len(cmp) > 0 {
			if err := json.Unmarshal(cmp, &r.Compare); err != nil {
				return nil, fmt.Errorf("read request %q of %s comparison: %w", requestID, r.Shadow, err)
			}
		}
		out.Shadows = append(out.Shadows, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read request %q: %w", requestID, err)
	}
	if out.Prediction == nil && len(out.Shadows) == 0 {
		return nil, understudy.Errorf(understudy.ENOTFOUND, "nothing stored for request id %q", requestID)
	}
	return &out, nil
}
