package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/understudy-ml/understudy/pkg/store"
	"github.com/understudy-ml/understudy/pkg/store/rollup"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// Pairs implements store.Snapshot: store/rollup searches, through the
// two queries below, and the records are read by id.
func (s *snapshot) Pairs(ctx context.Context, f store.PairFilter) ([]store.PairRecord, error) {
	keys, err := rollup.SearchPairs(ctx, s, f)
	if err != nil {
		return nil, fmt.Errorf("read pairs: %w", err)
	}
	return s.pairRecords(ctx, keys)
}

// PairKeys implements rollup.PairSource with one indexed range scan. Ties
// of time are broken by id, which increases in storage order.
func (s *snapshot) PairKeys(ctx context.Context, f store.PairFilter, lo, hi int64, limit int) ([]rollup.PairKey, error) {
	var a args
	where := s.shadowWhere(&a, f.Shadow, f.Version)
	where += "time_us >= " + a.add(lo) + " AND time_us < " + a.add(hi)
	if f.DisagreeOnly {
		where += " AND (status <> 'ok' OR agreement < 1 OR (agreement IS NULL AND max_abs_diff > " + a.add(f.Tolerance) + "))"
	}
	order := "time_us DESC, id DESC"
	if f.Order == store.ByDiff {
		where += " AND max_abs_diff IS NOT NULL"
		order = "max_abs_diff DESC, time_us DESC, id DESC"
	}
	var (
		out []rollup.PairKey
		k   rollup.PairKey
	)
	err := s.each(ctx, `SELECT id, time_us, coalesce(max_abs_diff, 0) FROM shadow_results WHERE `+where+` ORDER BY `+order+` LIMIT `+a.add(limit),
		a, []any{&k.ID, &k.TimeUS, &k.Diff}, func() error { out = append(out, k); return nil })
	return out, err
}

// PairRollups implements rollup.PairSource.
func (s *snapshot) PairRollups(ctx context.Context, f store.PairFilter, span, lo, hi int64, fn func(*rollup.PairRollup) error) error {
	var (
		a      args
		r      rollup.PairRollup
		idx    []int32
		n      []int64
		encBuf []byte
	)
	where := s.shadowWhere(&a, f.Shadow, f.Version)
	// The histogram is only needed for pairs without a class output.
	q := `SELECT start, disagree_pairs + errors + timeouts, ok - class_pairs, float_pairs, max_abs,
			CASE WHEN ok > class_pairs THEN (SELECT array_agg(bucket ORDER BY bucket) FROM shadow_rollup_buckets b WHERE b.rollup_id = r.id AND b.kind = 0) END,
			CASE WHEN ok > class_pairs THEN (SELECT array_agg(n ORDER BY bucket) FROM shadow_rollup_buckets b WHERE b.rollup_id = r.id AND b.kind = 0) END
		FROM shadow_rollups r WHERE ` + where + ` span = ` + a.add(span) + ` AND start >= ` + a.add(lo) + ` AND start < ` + a.add(hi)
	return s.each(ctx, q, a, []any{&r.Start, &r.Disagree, &r.NoClass, &r.FloatPairs, &r.MaxAbs, &idx, &n}, func() error {
		encBuf = encode(encBuf[:0], idx, n)
		r.Diff = encBuf
		return fn(&r)
	})
}

// pairRecords reads the pairs of keys, in the order of keys.
func (s *snapshot) pairRecords(ctx context.Context, keys []rollup.PairKey) ([]store.PairRecord, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	pos := make(map[int64]int, len(keys))
	ids := make([]int64, len(keys))
	for i, k := range keys {
		pos[k.ID], ids[i] = i, k.ID
	}
	recs := make([]store.PairRecord, len(keys))
	var (
		id, timeUS, latencyUS int64
		r                     store.PairRecord
		platency              *int64
	)
	err := s.each(ctx, `SELECT s.id, s.request_id, s.time_us, s.shadow, s.version, s.primary_model, s.primary_version,
			s.status, coalesce(s.error, ''), s.primary_class, s.shadow_class, s.agreement, s.max_abs_diff,
			s.latency_us, s.primary_latency_us, p.label, coalesce(p.inputs, ''), coalesce(p.outputs, ''), coalesce(s.outputs, ''), s.origin
		FROM shadow_results s LEFT JOIN predictions p ON p.request_id = s.request_id
		WHERE s.id = ANY($1)`, args{ids},
		[]any{&id, &r.RequestID, &timeUS, &r.Shadow, &r.Version, &r.PrimaryModel, &r.PrimaryVersion,
			&r.Status, &r.Error, &r.PrimaryClass, &r.ShadowClass, &r.Agreement, &r.MaxAbsDiff, &latencyUS, &platency, &r.Label,
			&r.Inputs, &r.PrimaryOutputs, &r.ShadowOutputs, &r.Origin}, func() error {
			r.Time = time.UnixMicro(timeUS)
			r.Latency = time.Duration(latencyUS) * time.Microsecond
			r.PrimaryLatency = nil
			if platency != nil {
				d := time.Duration(*platency) * time.Microsecond
				r.PrimaryLatency = &d
			}
			recs[pos[id]] = r
			// Scanning into a nil pointer allocates a fresh value, so the
			// record just stored keeps its own.
			r.PrimaryClass, r.ShadowClass, r.Agreement, r.MaxAbsDiff, r.Label = nil, nil, nil, nil, nil
			return nil
		})
	if err != nil {
		return nil, fmt.Errorf("read pairs: %w", err)
	}
	// Both reads are in one snapshot, so every key has its record.
	return recs, nil
}

// Request implements store.Snapshot.
func (s *snapshot) Request(ctx context.Context, requestID string) (*store.StoredRequest, error) {
	var (
		out                store.StoredRequest
		p                  store.StoredPrediction
		timeUS, latencyUS  int64
		cpuUS, labelTimeUS *int64
		inputs, outputs    *string
		errText            *string
	)
	err := s.tx.QueryRow(ctx, `SELECT request_id, time_us, model, version, inputs, inputs_sha256, inputs_size, outputs,
			latency_us, cpu_us, status, error, label, label_time_us
		FROM predictions WHERE request_id = $1`, requestID).
		Scan(&p.RequestID, &timeUS, &p.Model, &p.Version, &inputs, &p.InputsSHA256, &p.InputsSize, &outputs,
			&latencyUS, &cpuUS, &p.Status, &errText, &p.Label, &labelTimeUS)
	switch {
	case err == nil:
		p.Time = time.UnixMicro(timeUS)
		p.Inputs, p.Outputs, p.Error = deref(inputs), deref(outputs), deref(errText)
		p.Latency = time.Duration(latencyUS) * time.Microsecond
		if cpuUS != nil {
			p.CPU = time.Duration(*cpuUS) * time.Microsecond
		}
		if labelTimeUS != nil {
			p.LabelTime = time.UnixMicro(*labelTimeUS)
		}
		out.Prediction = &p
	case !errors.Is(err, pgx.ErrNoRows):
		return nil, fmt.Errorf("read request %q: %w", requestID, err)
	}
	var (
		r        store.StoredShadowResult
		platency *int64
		cpu      *int64
		cmp      []byte
	)
	a := args{requestID}
	err = s.each(ctx, `SELECT time_us, shadow, version, primary_model, primary_version, coalesce(outputs, ''),
			latency_us, primary_latency_us, cpu_us, status, coalesce(error, ''), comparison, origin
		FROM shadow_results WHERE `+s.originWhere(&a, "")+`request_id = $1 ORDER BY shadow, version`, a,
		[]any{&timeUS, &r.Shadow, &r.Version, &r.PrimaryModel, &r.PrimaryVersion, &r.Outputs,
			&latencyUS, &platency, &cpu, &r.Status, &r.Error, &cmp, &r.Origin}, func() error {
			v := r
			v.Time = time.UnixMicro(timeUS)
			v.Latency = time.Duration(latencyUS) * time.Microsecond
			if platency != nil {
				d := time.Duration(*platency) * time.Microsecond
				v.PrimaryLatency = &d
			}
			if cpu != nil {
				v.CPU = time.Duration(*cpu) * time.Microsecond
			}
			if len(cmp) > 0 {
				if err := json.Unmarshal(cmp, &v.Compare); err != nil {
					return fmt.Errorf("%s comparison: %w", v.Shadow, err)
				}
			}
			out.Shadows = append(out.Shadows, v)
			return nil
		})
	if err != nil {
		return nil, fmt.Errorf("read request %q: %w", requestID, err)
	}
	if out.Prediction == nil && len(out.Shadows) == 0 {
		return nil, understudy.Errorf(understudy.ENOTFOUND, "nothing stored for request id %q", requestID)
	}
	return &out, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
